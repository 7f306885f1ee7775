/* api: a deliberately small HTTP/1.1 server over TLS on an event loop.
 * Requests are framed by the project's strict parser (common/http.c, the
 * one the proxy uses): head capped at 16 KiB and 64 headers (431),
 * Content-Length bodies up to 64 KiB read and dropped (413 above; chunked
 * 411), 10 s for the whole request from its first byte (408), keep-alive
 * (30 s idle), pipelining refused (bytes after a request close the
 * connection after its answer). The loop thread only does TLS and framing;
 * each request runs route() on a small worker pool (store queries, verify,
 * enrollment may take seconds) and its answer comes back as a loop event,
 * so an idle or slow client costs a struct and never a thread. Queries are
 * rendered here, on the server, so that `vigil query` stays a thin client. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include "api.h"
#include "chain.h"
#include "cmetrics.h"
#include "console.h"
#include "enroll.h"
#include "export.h"
#include "http.h"
#include "ingest.h"
#include "jsonw.h"
#include "log.h"
#include "loop.h"
#include "tlsconn.h"
#include "workers.h"

#define API_MAX_HEAD 16384
#define API_MAX_HEADERS 64
#define API_MAX_BODY 65536        /* bodies are read and dropped: no route takes one */
#define API_HEAD_TIMEOUT_S 10      /* whole request, from its first byte (slowloris) */
#define API_HANDSHAKE_TIMEOUT_S 10
#define API_IDLE_TIMEOUT_S 30      /* keep-alive between requests */
#define API_WRITE_TIMEOUT_S 60     /* a reader that stops reading the answer */
#define API_LINGER_MS 500
#define API_MAX_CONNS 4096
#define API_WORKERS 4

/* A configuration as requests see it: SIGHUP swaps api->cur whole, and a
 * request keeps the one it started with (its token entry points into it)
 * until it ends; the last reference frees a replaced one. */
struct confref {
	struct colconf *c;
	bool owned;               /* false for the start-up one, main() frees it */
	int refs;
};

struct aconn;

struct api {
	int port;
	SSL_CTX *ctx;
	struct store *store;
	char *store_url;          /* verify opens its own read handle from it */
	pthread_mutex_t lock;     /* serialises a->store between workers */
	pthread_mutex_t state;    /* guards cur and refs (api_reload runs on another thread) */
	struct confref *cur;
	struct loop *loop;
	bool own_loop;            /* no shared loop given: a thread of its own runs it */
	pthread_t thr;
	struct workers *workers;
	struct loop_watch lw;     /* the listening socket */
	struct loop_timer accept_retry;  /* out of fds: accepting paused a moment */
	struct loop_watch stopw;  /* eventfd: api_stop asks the loop thread to wind down */
	bool stopping;
	unsigned nconns, max_conns;
	struct aconn *conns;
};

/* One client connection. Its state is what it waits for; a request buffer
 * exists only while a request is being read or answered, so an idle
 * keep-alive connection costs this struct and OpenSSL's. */
enum astate { A_HANDSHAKE, A_IDLE, A_HEAD, A_BODY, A_BUSY, A_WRITE, A_LINGER, A_DEAD };

struct aconn {
	struct tlsconn t;
	struct api *a;
	enum astate st;
	struct req *r;
	uint64_t body_left;       /* declared body bytes still to swallow */
	bool orphan;              /* closed while a worker held its request */
	struct loop_timer deadline;
	struct loop_timer reap;   /* frees a closed connection outside the dispatch */
	struct aconn *next, *prev;
};

struct req {
	struct api *a;
	struct aconn *c;
	struct work work;         /* route() on a worker */
	struct confref *ref;      /* the configuration this request runs under */
	const struct colconf *conf;
	struct jsonw out;         /* the whole answer, head and body */
	bool responded;
	bool close;               /* Connection: close on the answer */
	bool linger;              /* refused mid-request: lingering close after the answer */
	size_t got;               /* bytes in head */
	char method[8];
	char path[256];
	char *query;              /* points into target */
	char target[2048];
	char head[API_MAX_HEAD];
	struct http_request hr;   /* borrows from head */
	char auth[512];
	char origin[256];         /* Origin and Host: the CSRF check of state changes */
	char host[256];
	char fetch_site[32];      /* Sec-Fetch-Site */
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int api_parse_duration(const char *s, int64_t *us)
{
	char *end;
	if (!s || !*s)
		return -EINVAL;
	double v = strtod(s, &end);
	int64_t unit;
	if (end == s || v < 0)
		return -EINVAL;
	if (!*end || !strcmp(end, "s"))
		unit = 1000000LL;
	else if (!strcmp(end, "m"))
		unit = 60 * 1000000LL;
	else if (!strcmp(end, "h"))
		unit = 3600 * 1000000LL;
	else if (!strcmp(end, "d"))
		unit = 86400 * 1000000LL;
	else if (!strcmp(end, "w"))
		unit = 7 * 86400 * 1000000LL;
	else
		return -EINVAL;
	if (v * (double)unit > 1e17)
		return -EINVAL;
	*us = (int64_t)(v * (double)unit);
	return 0;
}

int api_format_parse(const char *s, enum api_format *out)
{
	if (!s || !strcmp(s, "table"))
		*out = FMT_TABLE;
	else if (!strcmp(s, "json") || !strcmp(s, "jsonl"))
		*out = FMT_JSON;
	else if (!strcmp(s, "csv"))
		*out = FMT_CSV;
	else
		return -EINVAL;
	return 0;
}

/* CSV per RFC 4180; a text cell that a spreadsheet would run as a formula
 * (leading = + - @) gets a leading quote mark (OWASP CSV injection). */
static void csv_cell(FILE *out, const char *s, bool text)
{
	fputc('"', out);
	if (text && s && (*s == '=' || *s == '+' || *s == '-' || *s == '@'))
		fputc('\'', out);
	for (; s && *s; s++) {
		if (*s == '"')
			fputc('"', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void fmt_time(int64_t us, char *buf, size_t len, bool full)
{
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&sec, &tm);
	if (full)
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(us % 1000000));
	else
		snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Table cells: control characters shown as '?', so a hostile string cannot
 * move the analyst's cursor (terminal escape injection). */
static void cell_clean(const char *s, char *out, size_t len, size_t maxw)
{
	size_t n = 0;
	for (; s && *s && n + 1 < len && n < maxw; s++)
		out[n++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	if (s && *s && n >= 3 && n >= maxw) {
		out[n - 1] = '.';
		out[n - 2] = '.';
	}
	out[n] = 0;
}

#define TCOLS 11
static const char *const thead[TCOLS] = { "TIME", "USER", "HOST", "EXE", "PROVIDER", "MODEL", "ACTION", "RULE",
					   "FINDINGS", "COST", "KIND" };
static const size_t tmax[TCOLS] = { 19, 16, 20, 28, 12, 24, 8, 20, 40, 16, 16 };

/* Cost is computed when the events are read, from the pricing table of the
 * running configuration: a price corrected in collector.yaml (SIGHUP)
 * applies to history too, and the signed events stay what the agent sent. */
static bool event_cost(const struct colconf *c, const struct store_event *e, double *cost)
{
	return colconf_cost(c, e->provider, e->model, e->prompt_tokens, e->completion_tokens, e->cached_tokens, cost);
}

static void table_cells(const struct store_event *e, const struct colconf *c, char cells[TCOLS][64])
{
	char t[40], f[512], cost[40] = "";
	double d;
	fmt_time(e->time_us, t, sizeof(t), false);
	if (store_findings_format(e->findings, e->nfindings, f, sizeof(f)))
		snprintf(f, sizeof(f), "...");
	if (event_cost(c, e, &d))
		snprintf(cost, sizeof(cost), "%.6f %s", d, c->currency);
	const char *v[TCOLS] = { t, e->user, e->host, e->exe, e->provider, e->model, e->action, e->rule, f, cost,
				 e->kind };
	for (int i = 0; i < TCOLS; i++)
		cell_clean(v[i] && *v[i] ? v[i] : "-", cells[i], 64, tmax[i]);
}

static const char *const csv_cols[] = { "time", "event_id", "agent_id", "host", "seq", "user", "uid", "pid",
					"comm", "exe", "cgroup", "container_id", "dst_ip", "dst_port", "sni", "kind", "provider",
					"method", "path", "model", "action", "rule", "findings", "status", "bytes_up",
					"bytes_down", "prompt_tokens", "completion_tokens", "latency_ms", "prev_hash",
					"hash", "mcp_server", "mcp_method", "tool", "mcp_session" };

/* The contract's JSON event plus cost and currency when priced. */
static void json_event(const struct store_event *e, const struct colconf *c, FILE *out)
{
	struct jsonw w;
	double d;
	jsonw_init(&w);
	export_json(e, &w);
	if (!w.oom && event_cost(c, e, &d) && w.out.len && w.out.data[w.out.len - 1] == '}') {
		w.out.len--;   /* reopen the object export_json closed */
		w.need_comma = true;
		jsonw_double(&w, "cost", d);
		jsonw_str(&w, "currency", c->currency);
		jsonw_obj_close(&w);
	}
	if (!w.oom) {
		fwrite(w.out.data, 1, w.out.len, out);
		fputc('\n', out);
	}
	jsonw_free(&w);
}

void api_render_events(const struct store_rows *r, const struct colconf *c, enum api_format fmt, FILE *out)
{
	if (fmt == FMT_JSON) {
		for (size_t i = 0; i < r->n; i++)
			json_event(&r->ev[i], c, out);
		return;
	}
	if (fmt == FMT_CSV) {
		for (size_t i = 0; i < sizeof(csv_cols) / sizeof(csv_cols[0]); i++)
			fprintf(out, "%s%s", i ? "," : "", csv_cols[i]);
		fputs(",cost,currency\r\n", out);
		for (size_t i = 0; i < r->n; i++) {
			const struct store_event *e = &r->ev[i];
			char t[40], f[1024], ph[65], h[65];
			fmt_time(e->time_us, t, sizeof(t), true);
			if (store_findings_format(e->findings, e->nfindings, f, sizeof(f)))
				f[0] = 0;
			evcodec_hex(e->prev_hash, 32, ph);
			evcodec_hex(e->hash, 32, h);
			fprintf(out, "%s,", t);
			csv_cell(out, e->event_id, true);
			fputc(',', out);
			csv_cell(out, e->agent_id, true);
			fputc(',', out);
			csv_cell(out, e->host, true);
			fprintf(out, ",%llu,", (unsigned long long)e->seq);
			csv_cell(out, e->user, true);
			fprintf(out, ",%lld,%lld,", (long long)e->uid, (long long)e->pid);
			const char *mid[] = { e->comm, e->exe, e->cgroup, e->container_id, e->dst_ip };
			for (int k = 0; k < 5; k++) {
				csv_cell(out, mid[k], true);
				fputc(',', out);
			}
			fprintf(out, "%lld,", (long long)e->dst_port);
			const char *rest[] = { e->sni, e->kind, e->provider, e->method, e->path, e->model, e->action,
					       e->rule, f };
			for (int k = 0; k < 9; k++) {
				csv_cell(out, rest[k], true);
				fputc(',', out);
			}
			fprintf(out, "%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,", (long long)e->status,
				(long long)e->bytes_up, (long long)e->bytes_down, (long long)e->prompt_tokens,
				(long long)e->completion_tokens, (long long)e->latency_ms, ph, h);
			const char *mcp[] = { e->mcp_server, e->mcp_method, e->tool, e->mcp_session };
			for (int k = 0; k < 4; k++) {
				csv_cell(out, mcp[k], true);
				fputc(',', out);
			}
			double d;
			if (event_cost(c, e, &d))
				fprintf(out, "%.6f,%s\r\n", d, c->currency);
			else
				fputs(",\r\n", out);
		}
		return;
	}
	size_t w[TCOLS];
	char cells[TCOLS][64];
	for (int i = 0; i < TCOLS; i++)
		w[i] = strlen(thead[i]);
	for (size_t r0 = 0; r0 < r->n; r0++) {
		table_cells(&r->ev[r0], c, cells);
		for (int i = 0; i < TCOLS; i++)
			if (strlen(cells[i]) > w[i])
				w[i] = strlen(cells[i]);
	}
	for (int i = 0; i < TCOLS; i++)
		fprintf(out, "%-*s%s", i == TCOLS - 1 ? 0 : (int)w[i], thead[i], i == TCOLS - 1 ? "\n" : "  ");
	for (size_t r0 = 0; r0 < r->n; r0++) {
		table_cells(&r->ev[r0], c, cells);
		for (int i = 0; i < TCOLS; i++)
			fprintf(out, "%-*s%s", i == TCOLS - 1 ? 0 : (int)w[i], cells[i], i == TCOLS - 1 ? "\n" : "  ");
	}
	fprintf(out, "(%zu event%s)\n", r->n, r->n == 1 ? "" : "s");
}

void api_render_top(const char *what, const struct store_top_row *rows, size_t n, const double *cost,
		    const char *currency, enum api_format fmt, FILE *out)
{
	bool findings = !strcmp(what, "findings");
	if (fmt == FMT_JSON) {
		struct jsonw w;
		jsonw_init(&w);
		for (size_t i = 0; i < n; i++) {
			jsonw_reset(&w);
			jsonw_obj_open(&w);
			jsonw_str(&w, "key", rows[i].key);
			jsonw_u64(&w, "events", rows[i].events);
			jsonw_u64(&w, "blocked", rows[i].blocked);
			if (findings)
				jsonw_u64(&w, "occurrences", rows[i].total);
			if (cost) {
				jsonw_double(&w, "cost", cost[i]);
				jsonw_str(&w, "currency", currency);
			}
			jsonw_obj_close(&w);
			if (!w.oom)
				fprintf(out, "%s\n", w.out.data);
		}
		jsonw_free(&w);
		return;
	}
	if (fmt == FMT_CSV) {
		fprintf(out, "key,events,blocked%s%s\r\n", findings ? ",occurrences" : "", cost ? ",cost,currency" : "");
		for (size_t i = 0; i < n; i++) {
			csv_cell(out, rows[i].key, true);
			fprintf(out, ",%llu,%llu", (unsigned long long)rows[i].events, (unsigned long long)rows[i].blocked);
			if (findings)
				fprintf(out, ",%llu", (unsigned long long)rows[i].total);
			if (cost)
				fprintf(out, ",%.6f,%s", cost[i], currency);
			fputs("\r\n", out);
		}
		return;
	}
	char head[32], c[64], ch[24];
	size_t w = strlen(what);
	snprintf(head, sizeof(head), "%s", what);
	snprintf(ch, sizeof(ch), "COST (%s)", currency ? currency : "");
	for (char *p = head; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	for (size_t i = 0; i < n; i++) {
		cell_clean(rows[i].key, c, sizeof(c), 60);
		if (strlen(c) > w)
			w = strlen(c);
	}
	fprintf(out, "%-*s  %10s  %10s%s", (int)w, head, "EVENTS", "BLOCKED", findings ? "  OCCURRENCES" : "");
	if (cost)
		fprintf(out, "  %14s", ch);
	fputc('\n', out);
	for (size_t i = 0; i < n; i++) {
		cell_clean(rows[i].key, c, sizeof(c), 60);
		fprintf(out, "%-*s  %10llu  %10llu", (int)w, c, (unsigned long long)rows[i].events,
			(unsigned long long)rows[i].blocked);
		if (findings)
			fprintf(out, "  %11llu", (unsigned long long)rows[i].total);
		if (cost)
			fprintf(out, "  %14.4f", cost[i]);
		fputc('\n', out);
	}
}

/* Cost of each top row: token use by (key, provider, model) priced with the
 * running table. NULL (no column) without a pricing table or on failure. */
static double *top_costs(struct store *s, const struct colconf *c, enum store_top_kind k,
			 const struct store_filter *f, const struct store_top_row *rows, size_t n)
{
	struct store_usage_row *u;
	size_t nu;
	if (!c->n_prices || !n || store_usage(s, k, f, &u, &nu))
		return NULL;
	double *cost = calloc(n, sizeof(*cost));
	for (size_t j = 0; cost && j < nu; j++) {
		double d;
		if (!colconf_cost(c, u[j].provider, u[j].model, (int64_t)u[j].input_tokens, (int64_t)u[j].output_tokens,
				  (int64_t)u[j].cached_tokens, &d))
			continue;
		for (size_t i = 0; i < n; i++)
			if (!strcmp(rows[i].key, u[j].key)) {
				cost[i] += d;
				break;
			}
	}
	store_usage_free(u, nu);
	return cost;
}

/* ---- HTTP plumbing ---- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The decoded value of key in the query string, into out; false if absent. */
static bool qparam(const struct req *r, const char *key, char *out, size_t len)
{
	const char *q = r->query;
	size_t kl = strlen(key);
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t l = amp ? (size_t)(amp - q) : strlen(q);
		if (l > kl && q[kl] == '=' && !strncmp(q, key, kl)) {
			size_t n = 0;
			for (size_t i = kl + 1; i < l && n + 1 < len; i++) {
				if (q[i] == '%' && i + 2 < l + 1 && hexval(q[i + 1]) >= 0 && hexval(q[i + 2]) >= 0) {
					out[n++] = (char)(hexval(q[i + 1]) * 16 + hexval(q[i + 2]));
					i += 2;
				} else {
					out[n++] = q[i] == '+' ? ' ' : q[i];
				}
			}
			out[n] = 0;
			return true;
		}
		q = amp ? amp + 1 : NULL;
	}
	return false;
}

/* On every response, page or JSON: the console's page may load only its
 * own script and style sheet (no inline script or style, no eval, nothing
 * from elsewhere), talk only to this server, and never be framed
 * (clickjacking of the review buttons); no MIME sniffing of a JSON body
 * into a page; no URL with filters leaks through a Referer. */
#define API_SECURITY_HEADERS \
	"Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';" \
	" connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\n" \
	"X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n" \
	"Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Resource-Policy: same-origin\r\n"

static void respond(struct req *r, int code, const char *ctype, const char *extra_hdr, const char *body, size_t len)
{
	const char *text = http_status_text(code);
	char head[2048];          /* security headers + an X-Vigil-Next of < 700 */
	if (r->responded)
		return;   /* one answer per request */
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: %s\r\n"
			 "Cache-Control: no-store\r\n" API_SECURITY_HEADERS "%s%s\r\n",
			 code, text, ctype, len, r->close ? "close" : "keep-alive",
			 code == 401 ? "WWW-Authenticate: Bearer realm=\"vigil\"\r\n" : "", extra_hdr ? extra_hdr : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		return;   /* cannot happen with the headers above; never send a cut head */
	r->responded = true;
	jsonw_raw(&r->out, head, (size_t)n);
	jsonw_raw(&r->out, body, len);
}

static void respond_err(struct req *r, int code, const char *msg)
{
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "error", msg);
	jsonw_obj_close(&w);
	jsonw_raw(&w, "\n", 1);
	respond(r, code, "application/json", NULL, w.oom ? "" : w.out.data, w.oom ? 0 : w.out.len);
	jsonw_free(&w);
}

static const struct colconf_token *authorize(struct req *r, enum colconf_role need)
{
	const char *t = r->auth;
	if (strncasecmp(t, "Bearer ", 7) != 0) {
		cmetrics_api(API_DENIED);
		respond_err(r, 401, "a bearer token is required");
		return NULL;
	}
	const struct colconf_token *tok = colconf_token_find(r->conf, t + 7);
	if (!tok) {
		cmetrics_api(API_DENIED);
		respond_err(r, 401, "unknown token");
		return NULL;
	}
	/* Roles nest: admin > analyst > metrics. */
	if (tok->role < need) {
		cmetrics_api(API_DENIED);
		log_warn("api: token '%s' denied %s %s (role too low)", tok->name, r->method, r->path);
		respond_err(r, 403, need == ROLE_ADMIN ? "this needs the admin role" : "this needs the analyst role");
		return NULL;
	}
	return tok;
}

/* bufs: 0..8 the text filters, 9 since, 10 until, 11 limit, 12 rule,
 * 13..16 the MCP filters. */
#define FILTER_BUFS 17

static int filter_from(struct req *r, struct store_filter *f, char bufs[FILTER_BUFS][256], char *why, size_t wl)
{
	static const char *keys[] = { "user", "host", "finding", "action", "exe", "provider", "model", "kind", "agent" };
	static const char *mcp_keys[] = { "mcp_server", "mcp_method", "tool", "mcp_session" };
	const char **dst[] = { &f->user, &f->host, &f->finding, &f->action, &f->exe, &f->provider, &f->model, &f->kind,
			       &f->agent_id };
	const char **mcp_dst[] = { &f->mcp_server, &f->mcp_method, &f->tool, &f->mcp_session };
	memset(f, 0, sizeof(*f));
	if (qparam(r, "rule", bufs[12], 256) && bufs[12][0])
		f->rule = bufs[12];
	for (size_t i = 0; i < 9; i++)
		if (qparam(r, keys[i], bufs[i], 256) && bufs[i][0])
			*dst[i] = bufs[i];
	for (size_t i = 0; i < 4; i++)
		if (qparam(r, mcp_keys[i], bufs[13 + i], 256) && bufs[13 + i][0])
			*mcp_dst[i] = bufs[13 + i];
	int64_t d;
	if (qparam(r, "since", bufs[9], 256) && bufs[9][0]) {
		if (api_parse_duration(bufs[9], &d)) {
			snprintf(why, wl, "since: expected a duration such as 24h or 7d");
			return -EINVAL;
		}
		f->since_us = now_us() - d;
	}
	if (qparam(r, "until", bufs[10], 256) && bufs[10][0]) {
		if (api_parse_duration(bufs[10], &d)) {
			snprintf(why, wl, "until: expected a duration such as 1h (ago)");
			return -EINVAL;
		}
		f->until_us = now_us() - d;
	}
	if (qparam(r, "limit", bufs[11], 256) && bufs[11][0]) {
		char *end;
		unsigned long long l = strtoull(bufs[11], &end, 10);
		if (*end || !l || l > STORE_MAX_LIMIT) {
			snprintf(why, wl, "limit: expected 1..%d", STORE_MAX_LIMIT);
			return -EINVAL;
		}
		f->limit = (size_t)l;
	}
	return 0;
}

static void send_stream(struct req *r, int code, const char *ctype, const char *extra, char *buf, size_t len)
{
	respond(r, code, ctype, extra, buf ? buf : "", buf ? len : 0);
	free(buf);
}

/* The console's paging cursor, "TIME.SEQ.BOOT.AGENT" with boot and agent
 * in hex: the API hands it out in X-Vigil-Next and takes it back in
 * cursor=. Hex because those ids come from agents, and a header value must
 * never carry their bytes (CR LF would split the response). */
static void cursor_format(const struct store_event *e, char *out, size_t len)
{
	int n = snprintf(out, len, "%lld.%llu.", (long long)e->time_us, (unsigned long long)e->seq);
	const char *ids[2] = { e->boot_id ? e->boot_id : "", e->agent_id ? e->agent_id : "" };
	for (int k = 0; k < 2 && n > 0; k++) {
		for (const unsigned char *p = (const unsigned char *)ids[k]; *p && (size_t)n + 3 < len; p++)
			n += snprintf(out + n, len - (size_t)n, "%02x", *p);
		if (!k && (size_t)n + 2 < len)
			out[n++] = '.', out[n] = 0;
	}
}

static bool unhex(const char *s, size_t l, char *out, size_t len)
{
	if (l % 2 || l / 2 >= len)
		return false;
	for (size_t i = 0; i < l; i += 2) {
		if (hexval(s[i]) < 0 || hexval(s[i + 1]) < 0)
			return false;
		out[i / 2] = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
	}
	out[l / 2] = 0;
	return true;
}

static bool cursor_parse(const char *s, struct store_evref *ref, char *boot, char *agent, size_t idlen)
{
	char *end;
	long long t = strtoll(s, &end, 10);
	if (end == s || *end != '.')
		return false;
	s = end + 1;
	unsigned long long seq = strtoull(s, &end, 10);
	if (end == s || *end != '.')
		return false;
	s = end + 1;
	const char *dot = strchr(s, '.');
	if (!dot || !unhex(s, (size_t)(dot - s), boot, idlen) || !unhex(dot + 1, strlen(dot + 1), agent, idlen))
		return false;
	*ref = (struct store_evref){ .time_us = t, .agent_id = agent, .boot_id = boot, .seq = seq };
	return true;
}

static void h_events(struct req *r)
{
	struct store_filter f;
	char bufs[FILTER_BUFS][256], why[128], fs[16] = "table", cur[600], boot[128], agent[128], next[700];
	enum api_format fmt;
	struct store_rows rows;
	struct store_evref before;
	if (filter_from(r, &f, bufs, why, sizeof(why)))
		return respond_err(r, 400, why);
	qparam(r, "format", fs, sizeof(fs));
	if (api_format_parse(fs, &fmt))
		return respond_err(r, 400, "format must be table, json or csv");
	if (qparam(r, "cursor", cur, sizeof(cur)) && cur[0]) {
		if (!cursor_parse(cur, &before, boot, agent, sizeof(boot)))
			return respond_err(r, 400, "cursor: not one this server handed out (X-Vigil-Next)");
		f.before = &before;
	}
	pthread_mutex_lock(&r->a->lock);
	int rc = store_query(r->a->store, &f, &rows);
	if (rc)
		log_err("api: query: %s", store_errmsg(r->a->store));
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed to answer");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		api_render_events(&rows, r->conf, fmt, m);
		fclose(m);
	}
	/* A full page may have a next one: its cursor is the last row. */
	next[0] = 0;
	if (rows.n && rows.n == (f.limit ? f.limit : STORE_DEFAULT_LIMIT)) {
		int n = snprintf(next, sizeof(next), "X-Vigil-Next: ");
		cursor_format(&rows.ev[rows.n - 1], next + n, sizeof(next) - (size_t)n - 2);
		strcat(next, "\r\n");
	}
	store_rows_free(&rows);
	send_stream(r, 200, fmt == FMT_JSON ? "application/x-ndjson" : fmt == FMT_CSV ? "text/csv" : "text/plain",
		    next[0] ? next : NULL, buf, len);
}

/* One event by its chain position (agent, boot, seq), for the console's
 * detail view: the event as JSON (findings are types and counts; the
 * store never had more) and where it sits in its agent's chain. */
static void h_event(struct req *r)
{
	char agent[128], boot[128], seqs[24], *end;
	if (!qparam(r, "agent", agent, sizeof(agent)) || !agent[0] || !qparam(r, "boot", boot, sizeof(boot)) ||
	    !qparam(r, "seq", seqs, sizeof(seqs)) || !seqs[0])
		return respond_err(r, 400, "agent, boot and seq are required");
	unsigned long long seq = strtoull(seqs, &end, 10);
	if (*end)
		return respond_err(r, 400, "seq: expected a number");
	struct store_evref ref = { .agent_id = agent, .boot_id = boot, .seq = seq };
	struct store_filter f = { .at = &ref, .limit = 1 };
	struct store_rows rows;
	struct store_agent ag;
	pthread_mutex_lock(&r->a->lock);
	int rc = store_query(r->a->store, &f, &rows);
	if (rc)
		log_err("api: event: %s", store_errmsg(r->a->store));
	else if (store_agent_get(r->a->store, agent, &ag))
		memset(&ag, 0, sizeof(ag));
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed to answer");
	if (!rows.n) {
		store_rows_free(&rows);
		return respond_err(r, 404, "no such event");
	}
	const struct store_event *e = &rows.ev[0];
	char *buf = NULL, ph[65], h[65];
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		fputs("{\"event\":", m);
		json_event(e, r->conf, m);
		struct jsonw w;
		jsonw_init(&w);
		evcodec_hex(e->prev_hash, 32, ph);
		evcodec_hex(e->hash, 32, h);
		jsonw_obj_open(&w);
		jsonw_str(&w, "agent_id", e->agent_id);
		jsonw_str(&w, "boot_id", e->boot_id);
		jsonw_u64(&w, "seq", e->seq);
		jsonw_str(&w, "prev_hash", ph);
		jsonw_str(&w, "hash", h);
		jsonw_bool(&w, "signed", e->raw_len > 0);
		if (ag.has_head)
			jsonw_u64(&w, "head_seq", ag.head_seq);
		if (ag.has_horizon)
			jsonw_u64(&w, "horizon_seq", ag.horizon_seq);
		jsonw_obj_close(&w);
		fprintf(m, ",\"chain\":%s}\n", w.oom ? "null" : w.out.data);
		jsonw_free(&w);
		fclose(m);
	}
	store_rows_free(&rows);
	send_stream(r, 200, "application/json", NULL, buf, len);
}

/* Who the console is logged in as: its token's name and role. */
static void h_whoami(struct req *r, const struct colconf_token *tok)
{
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "name", tok->name);
	jsonw_str(&w, "role", tok->role == ROLE_ADMIN ? "admin" : tok->role == ROLE_ANALYST ? "analyst" : "metrics");
	jsonw_str(&w, "currency", r->conf->currency);
	jsonw_obj_close(&w);
	jsonw_raw(&w, "\n", 1);
	respond(r, 200, "application/json", NULL, w.oom ? "" : w.out.data, w.oom ? 0 : w.out.len);
	jsonw_free(&w);
}

static void h_top(struct req *r)
{
	struct store_filter f;
	char bufs[FILTER_BUFS][256], why[128], fs[16] = "table", by[32] = "users";
	enum api_format fmt;
	enum store_top_kind k;
	struct store_top_row *rows;
	size_t n;
	if (filter_from(r, &f, bufs, why, sizeof(why)))
		return respond_err(r, 400, why);
	qparam(r, "format", fs, sizeof(fs));
	qparam(r, "by", by, sizeof(by));
	if (api_format_parse(fs, &fmt))
		return respond_err(r, 400, "format must be table, json or csv");
	if (store_top_parse(by, &k))
		return respond_err(r, 400, "by must be users, exes, providers, findings, hosts, models, actions, agents, tools,"
				  " mcp_servers, mcp_methods or mcp_sessions");
	double *cost = NULL;
	pthread_mutex_lock(&r->a->lock);
	int rc = store_top(r->a->store, k, &f, f.limit ? f.limit : 10, &rows, &n);
	if (rc)
		log_err("api: top: %s", store_errmsg(r->a->store));
	else
		cost = top_costs(r->a->store, r->conf, k, &f, rows, n);
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed to answer");
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		api_render_top(by, rows, n, cost, r->conf->currency, fmt, m);
		fclose(m);
	}
	free(cost);
	store_top_free(rows, n);
	send_stream(r, 200, fmt == FMT_JSON ? "application/x-ndjson" : fmt == FMT_CSV ? "text/csv" : "text/plain", NULL,
		    buf, len);
}

static void h_verify(struct req *r)
{
	char agent[128];
	bool one = qparam(r, "agent", agent, sizeof(agent)) && agent[0];
	struct chain_report rep;
	struct store *s;
	char err[512];
	/* A full verify reads every event: on the shared handle it would hold
	 * the API's store mutex for minutes and stall every other query. Its
	 * own handle reads beside them (SQLite: a WAL snapshot that neither
	 * blocks nor waits for the writer; ClickHouse: its own HTTP session). */
	if (store_open(r->a->store_url, &s, err, sizeof(err))) {
		log_err("api: verify: %s", err);
		return respond_err(r, 503, "the store failed during verification");
	}
	int rc = chain_verify(s, one ? agent : NULL, &rep);
	if (rc)
		log_err("api: verify: %s", store_errmsg(s));
	store_close(s);
	if (rc) {
		chain_report_free(&rep);
		return respond_err(r, 503, "the store failed during verification");
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		for (size_t i = 0; i < rep.nlines; i++)
			fprintf(m, "%s\n", rep.lines[i]);
		if (rep.problems > rep.nlines)
			fprintf(m, "... and %zu more problems\n", rep.problems - rep.nlines);
		if (rep.problems)
			fprintf(m, "BROKEN: %zu problem%s in %zu agent%s, %zu events, %zu batches checked\n", rep.problems,
				rep.problems == 1 ? "" : "s", rep.agents, rep.agents == 1 ? "" : "s", rep.events, rep.batches);
		else
			fprintf(m, "INTACT: %zu agent%s, %zu events, %zu batches: every chain and signature verifies\n",
				rep.agents, rep.agents == 1 ? "" : "s", rep.events, rep.batches);
		fclose(m);
	}
	log_info("api: verify: %zu problems over %zu events", rep.problems, rep.events);
	send_stream(r, 200, "text/plain", rep.problems ? "X-Vigil-Verify: broken\r\n" : "X-Vigil-Verify: intact\r\n",
		    buf, len);
	chain_report_free(&rep);
}

/* What the console shows per agent beyond the agents table: its version
 * (from its newest agent_start), unclean stops, tamper reports and gap
 * records (missing seqs). One scan per kind, not per agent; the list is
 * sorted by agent_id (store_agent_list), so each row finds its agent by
 * bisection. */
struct agent_health {
	char version[32];
	uint64_t unclean, tamper, gaps, missing;
};
#define HEALTH_SCAN_MAX 100000

static int agent_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct store_agent *)elem)->agent_id);
}

static void health_add(const struct store_event *e, const struct store_agent *list, size_t n, struct agent_health *h)
{
	const struct store_agent *a = e->agent_id ? bsearch(e->agent_id, list, n, sizeof(*list), agent_cmp) : NULL;
	if (!a)
		return;
	struct agent_health *x = &h[a - list];
	if (!strcmp(e->kind, "tamper")) {
		x->tamper++;
	} else if (!strcmp(e->kind, "gap")) {
		x->gaps++;
		x->missing += e->gap_count;
	} else {
		if (e->error && !strcmp(e->error, "unclean_stop"))
			x->unclean++;
		/* Newest first: the first start seen carries the running version. */
		const char *v = e->reason && !strncmp(e->reason, "version=", 8) ? e->reason + 8 : NULL;
		if (v && !x->version[0]) {
			size_t l = strcspn(v, " ");
			snprintf(x->version, sizeof(x->version), "%.*s", (int)(l < 31 ? l : 31), v);
		}
	}
}

static int agents_health(struct store *s, const struct store_agent *list, size_t n, struct agent_health *h)
{
	static const char *const kinds[] = { "agent_start", "tamper", "gap" };
	for (size_t k = 0; k < 3; k++) {
		struct store_filter f = { .kind = kinds[k], .limit = HEALTH_SCAN_MAX };
		struct store_rows rows;
		int rc = store_query(s, &f, &rows);
		if (rc)
			return rc;
		for (size_t i = 0; i < rows.n; i++)
			health_add(&rows.ev[i], list, n, h);
		store_rows_free(&rows);
	}
	return 0;
}

static void h_agents(struct req *r)
{
	struct store_agent *list;
	size_t n;
	char fs[16] = "table";
	enum api_format fmt;
	qparam(r, "format", fs, sizeof(fs));
	if (api_format_parse(fs, &fmt))
		return respond_err(r, 400, "format must be table, json or csv");
	struct agent_health *health = NULL;
	pthread_mutex_lock(&r->a->lock);
	int rc = store_agent_list(r->a->store, &list, &n);
	if (!rc && fmt == FMT_JSON && n && (health = calloc(n, sizeof(*health))) &&
	    agents_health(r->a->store, list, n, health)) {
		log_err("api: agents: %s", store_errmsg(r->a->store));
		free(health);
		health = NULL;
	}
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed to answer");
	int64_t silent_us = (int64_t)r->conf->alerts.silent_after_s * 1000000, now = now_us();
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		struct jsonw w;
		jsonw_init(&w);
		if (fmt == FMT_TABLE)
			fprintf(m, "%-32s  %-8s  %-7s  %10s  %s\n", "AGENT", "KEY", "REVOKED", "HEAD_SEQ", "LAST_SEEN");
		else if (fmt == FMT_CSV)
			fprintf(m, "agent_id,key_pinned,revoked,head_seq,last_seen\r\n");
		for (size_t i = 0; i < n; i++) {
			char t[40] = "-";
			if (list[i].last_seen_us)
				fmt_time(list[i].last_seen_us, t, sizeof(t), fmt != FMT_TABLE);
			if (fmt == FMT_TABLE) {
				fprintf(m, "%-32s  %-8s  %-7s  %10llu  %s\n", list[i].agent_id, list[i].has_key ? "pinned" : "-",
					list[i].revoked ? "yes" : "no", (unsigned long long)list[i].head_seq, t);
			} else if (fmt == FMT_CSV) {
				fprintf(m, "%s,%d,%d,%llu,%s\r\n", list[i].agent_id, list[i].has_key, list[i].revoked,
					(unsigned long long)list[i].head_seq, t);
			} else {
				jsonw_reset(&w);
				jsonw_obj_open(&w);
				jsonw_str(&w, "agent_id", list[i].agent_id);
				jsonw_bool(&w, "key_pinned", list[i].has_key);
				jsonw_bool(&w, "revoked", list[i].revoked);
				jsonw_u64(&w, "head_seq", list[i].head_seq);
				jsonw_str(&w, "last_seen", t);
				jsonw_bool(&w, "silent", !list[i].revoked && silent_us &&
						   now - list[i].last_seen_us > silent_us);
				if (health) {
					jsonw_str(&w, "version", health[i].version);
					jsonw_u64(&w, "unclean_stops", health[i].unclean);
					jsonw_u64(&w, "tamper", health[i].tamper);
					jsonw_u64(&w, "gaps", health[i].gaps);
					jsonw_u64(&w, "missing_seqs", health[i].missing);
				}
				jsonw_obj_close(&w);
				if (!w.oom)
					fprintf(m, "%s\n", w.out.data);
			}
		}
		jsonw_free(&w);
		fclose(m);
	}
	free(list);
	free(health);
	send_stream(r, 200, fmt == FMT_JSON ? "application/x-ndjson" : "text/plain", NULL, buf, len);
}

/* The review state of (exe, provider): "unreviewed" unless an admin set one. */
static const char *review_of(const struct store_review *rv, size_t n, const char *exe, const char *provider)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(rv[i].exe, exe) && !strcmp(rv[i].provider, provider))
			return rv[i].state;
	return "unreviewed";
}

/* Cost per inventory row, for the console: the priced token use of the
 * row's (program, provider) pair, the unit an admin reviews, over every
 * user and host in the window (store_usage groups by one key, so a row of
 * several users shows their pair's total). NULL without a pricing table. */
static double *inventory_costs(struct store *s, const struct colconf *c, const struct store_filter *f,
			       const struct store_inventory_row *v, size_t n)
{
	struct store_usage_row *u;
	size_t nu;
	if (!c->n_prices || !n || store_usage(s, STORE_TOP_EXES, f, &u, &nu))
		return NULL;
	double *cost = calloc(n, sizeof(*cost));
	for (size_t j = 0; cost && j < nu; j++) {
		double d;
		if (!colconf_cost(c, u[j].provider, u[j].model, (int64_t)u[j].input_tokens, (int64_t)u[j].output_tokens,
				  (int64_t)u[j].cached_tokens, &d))
			continue;
		for (size_t i = 0; i < n; i++)
			if (!strcmp(v[i].exe, u[j].key) && !strcmp(v[i].provider, u[j].provider))
				cost[i] += d;
	}
	store_usage_free(u, nu);
	return cost;
}

static void render_inventory(const struct store_inventory_row *v, size_t n, const struct store_review *rv, size_t nrv,
			     const double *cost, const char *currency, enum api_format fmt, FILE *m)
{
	static const char *const head[] = { "USER", "EXE", "PROVIDER", "HOST", "FIRST_SEEN", "LAST_SEEN", "EVENTS",
					    "REQUESTS", "TOKENS", "FINDINGS", "BLOCKS", "REVIEW" };
	struct jsonw w;
	jsonw_init(&w);
	if (fmt == FMT_CSV)
		fputs("user,exe,provider,host,first_seen,last_seen,events,requests,tokens,findings,blocks,review\r\n", m);
	else if (fmt == FMT_TABLE)
		fprintf(m, "%-12s  %-28s  %-16s  %-16s  %-19s  %-19s  %8s  %8s  %10s  %8s  %6s  %s\n", head[0], head[1],
			head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11]);
	for (size_t i = 0; i < n; i++) {
		const struct store_inventory_row *r = &v[i];
		const char *state = review_of(rv, nrv, r->exe, r->provider);
		char f[40], l[40];
		fmt_time(r->first_us, f, sizeof(f), fmt != FMT_TABLE);
		fmt_time(r->last_us, l, sizeof(l), fmt != FMT_TABLE);
		if (fmt == FMT_JSON) {
			jsonw_reset(&w);
			jsonw_obj_open(&w);
			jsonw_str(&w, "user", r->user);
			jsonw_str(&w, "exe", r->exe);
			jsonw_str(&w, "provider", r->provider);
			jsonw_str(&w, "host", r->host);
			jsonw_str(&w, "first_seen", f);
			jsonw_str(&w, "last_seen", l);
			jsonw_u64(&w, "events", r->events);
			jsonw_u64(&w, "requests", r->requests);
			jsonw_u64(&w, "tokens", r->tokens);
			jsonw_u64(&w, "findings", r->findings);
			jsonw_u64(&w, "blocks", r->blocks);
			jsonw_str(&w, "review", state);
			if (cost) {
				jsonw_double(&w, "pair_cost", cost[i]);
				jsonw_str(&w, "currency", currency);
			}
			jsonw_obj_close(&w);
			if (!w.oom)
				fprintf(m, "%s\n", w.out.data);
		} else if (fmt == FMT_CSV) {
			const char *cells[] = { r->user, r->exe, r->provider, r->host };
			for (int k = 0; k < 4; k++) {
				csv_cell(m, cells[k], true);
				fputc(',', m);
			}
			fprintf(m, "%s,%s,%llu,%llu,%llu,%llu,%llu,%s\r\n", f, l, (unsigned long long)r->events,
				(unsigned long long)r->requests, (unsigned long long)r->tokens,
				(unsigned long long)r->findings, (unsigned long long)r->blocks, state);
		} else {
			char c[4][64];
			cell_clean(*r->user ? r->user : "-", c[0], 64, 12);
			cell_clean(*r->exe ? r->exe : "-", c[1], 64, 28);
			cell_clean(r->provider, c[2], 64, 16);
			cell_clean(*r->host ? r->host : "-", c[3], 64, 16);
			fprintf(m, "%-12s  %-28s  %-16s  %-16s  %-19s  %-19s  %8llu  %8llu  %10llu  %8llu  %6llu  %s\n", c[0],
				c[1], c[2], c[3], f, l, (unsigned long long)r->events, (unsigned long long)r->requests,
				(unsigned long long)r->tokens, (unsigned long long)r->findings,
				(unsigned long long)r->blocks, state);
		}
	}
	if (fmt == FMT_TABLE)
		fprintf(m, "(%zu row%s)\n", n, n == 1 ? "" : "s");
	jsonw_free(&w);
}

static void h_inventory(struct req *r)
{
	struct store_filter f;
	char bufs[FILTER_BUFS][256], why[128], fs[16] = "table";
	enum api_format fmt;
	struct store_inventory_row *v = NULL;
	struct store_review *rv = NULL;
	size_t n = 0, nrv = 0;
	if (filter_from(r, &f, bufs, why, sizeof(why)))
		return respond_err(r, 400, why);
	qparam(r, "format", fs, sizeof(fs));
	if (api_format_parse(fs, &fmt))
		return respond_err(r, 400, "format must be table, json or csv");
	pthread_mutex_lock(&r->a->lock);
	double *cost = NULL;
	int rc = store_inventory(r->a->store, &f, &v, &n);
	if (!rc)
		rc = store_review_list(r->a->store, &rv, &nrv);
	if (!rc && fmt == FMT_JSON)
		cost = inventory_costs(r->a->store, r->conf, &f, v, n);
	if (rc)
		log_err("api: inventory: %s", store_errmsg(r->a->store));
	pthread_mutex_unlock(&r->a->lock);
	if (rc) {
		store_inventory_free(v, n);
		return respond_err(r, 503, "the store failed to answer");
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (m) {
		render_inventory(v, n, rv, nrv, cost, r->conf->currency, fmt, m);
		fclose(m);
	}
	free(cost);
	store_inventory_free(v, n);
	store_review_free(rv, nrv);
	send_stream(r, 200, fmt == FMT_JSON ? "application/x-ndjson" : fmt == FMT_CSV ? "text/csv" : "text/plain", NULL,
		    buf, len);
}

/* An admin sets the review state of a (program, provider) pair. The change
 * is itself an audit record in the store (kind "review", queryable and
 * exported like any event), naming who made it. */
static void h_review(struct req *r, const struct colconf_token *tok)
{
	char exe[4096], prov[256], state[32];
	if (!qparam(r, "exe", exe, sizeof(exe)) || !exe[0] || !qparam(r, "provider", prov, sizeof(prov)) || !prov[0] ||
	    !qparam(r, "state", state, sizeof(state)) || !STORE_REVIEW_STATE_OK(state))
		return respond_err(r, 400, "exe, provider and state (unreviewed, approved or unapproved) are required");
	char reason[4500];
	snprintf(reason, sizeof(reason), "%s set %s with %s to %s", tok->name, exe, prov, state);
	struct store_review rv = { .exe = exe, .provider = prov, .state = state, .by = tok->name, .at_us = now_us() };
	struct store_event ev = { .time_us = rv.at_us, .kind = "review", .agent_id = "collector", .exe = exe,
				  .provider = prov, .action = state, .user = tok->name, .reason = reason,
				  .injection_score = -1 };
	pthread_mutex_lock(&r->a->lock);
	int rc = store_review_set(r->a->store, &rv);
	if (!rc)
		rc = store_insert_local(r->a->store, &ev);
	if (rc)
		log_err("api: review: %s", store_errmsg(r->a->store));
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed");
	log_warn("api: %s", reason);
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "exe", exe);
	jsonw_str(&w, "provider", prov);
	jsonw_str(&w, "review", state);
	jsonw_str(&w, "by", tok->name);
	jsonw_obj_close(&w);
	jsonw_raw(&w, "\n", 1);
	respond(r, 200, "application/json", NULL, w.oom ? "" : w.out.data, w.oom ? 0 : w.out.len);
	jsonw_free(&w);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *b = NULL;
	size_t n = 0;
	if (!f)
		return NULL;
	b = malloc(65536);
	if (b) {
		n = fread(b, 1, 65535, f);
		b[n] = 0;
	}
	fclose(f);
	return b;
}

static void h_enroll(struct req *r, const struct colconf_token *tok)
{
	char id[128], err[256];
	char *key = NULL, *cert = NULL, *ca = NULL;
	if (!qparam(r, "agent_id", id, sizeof(id)) || !enroll_agent_id_ok(id))
		return respond_err(r, 400, "agent_id must be 1 to 64 of [A-Za-z0-9._-] (not 'collector')");
	pthread_mutex_lock(&r->a->lock);
	int rc = enroll_issue(r->conf->client_ca, r->conf->client_ca_key, r->a->store, id, (int)r->conf->cert_days,
			      &key, &cert, err, sizeof(err));
	pthread_mutex_unlock(&r->a->lock);
	if (rc == -EPERM)
		return respond_err(r, 403, "this agent id is revoked");
	if (rc) {
		log_err("api: enroll %s: %s", id, err);
		return respond_err(r, 503, "cannot issue a certificate (is client_ca_key readable?)");
	}
	ca = slurp(r->conf->client_ca);
	struct jsonw w;
	jsonw_init(&w);
	jsonw_obj_open(&w);
	jsonw_str(&w, "agent_id", id);
	jsonw_str(&w, "key_pem", key);
	jsonw_str(&w, "cert_pem", cert);
	jsonw_str(&w, "ca_pem", ca ? ca : "");
	jsonw_obj_close(&w);
	jsonw_raw(&w, "\n", 1);
	log_info("api: %s enrolled agent %s", tok->name, id);
	respond(r, 200, "application/json", NULL, w.oom ? "" : w.out.data, w.oom ? 0 : w.out.len);
	if (w.out.data)
		OPENSSL_cleanse(w.out.data, w.out.len);
	jsonw_free(&w);
	OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(cert);
	free(ca);
}

static void h_revoke(struct req *r, const struct colconf_token *tok)
{
	char id[128], undo[8] = "";
	if (!qparam(r, "agent_id", id, sizeof(id)) || !enroll_agent_id_ok(id))
		return respond_err(r, 400, "agent_id must be 1 to 64 of [A-Za-z0-9._-]");
	qparam(r, "undo", undo, sizeof(undo));
	bool lift = !strcmp(undo, "1");
	pthread_mutex_lock(&r->a->lock);
	int rc = store_agent_set_revoked(r->a->store, id, !lift);
	pthread_mutex_unlock(&r->a->lock);
	if (rc)
		return respond_err(r, 503, "the store failed");
	log_warn("api: %s %s agent %s", tok->name, lift ? "un-revoked" : "revoked", id);
	char body[200];
	int n = snprintf(body, sizeof(body), "{\"agent_id\":\"%s\",\"revoked\":%s}\n", id, lift ? "false" : "true");
	respond(r, 200, "application/json", NULL, body, (size_t)n);
}

/* Agents that went silent: enrolled, not revoked, and no batch for
 * SILENT_AFTER_S. An agent that stops shipping is either off, broken or
 * tampered with; the SOC alerts on this gauge. Takes ownership of base. */
#define SILENT_AFTER_S (15 * 60)
static char *silent_agents_metrics(struct api *a, char *base)
{
	struct store_agent *list = NULL;
	size_t n = 0, silent = 0, active = 0;
	char *out = NULL;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	pthread_mutex_lock(&a->lock);
	int rc = store_agent_list(a->store, &list, &n);
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (list[i].revoked)
			continue;
		if (now_us - list[i].last_seen_us > (int64_t)SILENT_AFTER_S * 1000000)
			silent++;
		else
			active++;
	}
	free(list);
	if (asprintf(&out, "%s# HELP vigil_collector_agents Enrolled agents by whether they shipped in the last %d s.\n"
		     "# TYPE vigil_collector_agents gauge\nvigil_collector_agents{state=\"active\"} %zu\n"
		     "vigil_collector_agents{state=\"silent\"} %zu\n", base ? base : "", SILENT_AFTER_S, active,
		     silent) < 0)
		return base;
	free(base);
	return out;
}

/* A state change from a browser. The bearer token in the Authorization
 * header is what makes the console CSRF-safe: a browser never attaches it
 * on its own (unlike a cookie), and a page of another origin cannot set it
 * without a CORS preflight, which this server never grants. As a second
 * lock, a request the browser marks as coming from elsewhere (an Origin
 * other than this server, Sec-Fetch-Site cross-site or same-site) is
 * refused before its token is looked at. The CLI sends neither header. */
static bool same_origin(const struct req *r)
{
	if (r->fetch_site[0] && strcmp(r->fetch_site, "same-origin") && strcmp(r->fetch_site, "none"))
		return false;
	if (!r->origin[0])
		return true;
	char want[300];
	snprintf(want, sizeof(want), "https://%s", r->host);
	return r->host[0] && !strcasecmp(r->origin, want);
}

/* The API's endpoints: path, method, the role a token needs, what the
 * metrics count it as (-1: nothing), and the handler (fn_tok when it needs
 * the caller's token: audited changes, whoami). */
static const struct route {
	const char *path;
	bool post;                  /* else GET */
	enum colconf_role role;
	int metric;                 /* enum api_action */
	void (*fn)(struct req *r);
	void (*fn_tok)(struct req *r, const struct colconf_token *tok);
} routes[] = {
	{ "/api/v1/events", false, ROLE_ANALYST, API_EVENTS, h_events, NULL },
	{ "/api/v1/top", false, ROLE_ANALYST, API_TOP, h_top, NULL },
	{ "/api/v1/verify", false, ROLE_ANALYST, API_VERIFY, h_verify, NULL },
	{ "/api/v1/agents", false, ROLE_ANALYST, API_AGENTS, h_agents, NULL },
	{ "/api/v1/event", false, ROLE_ANALYST, API_EVENTS, h_event, NULL },
	{ "/api/v1/whoami", false, ROLE_ANALYST, -1, NULL, h_whoami },
	{ "/api/v1/inventory", false, ROLE_ANALYST, -1, h_inventory, NULL },
	{ "/api/v1/review", true, ROLE_ADMIN, -1, NULL, h_review },
	{ "/api/v1/enroll", true, ROLE_ADMIN, API_ENROLL, NULL, h_enroll },
	{ "/api/v1/revoke", true, ROLE_ADMIN, API_REVOKE, NULL, h_revoke },
};

static void route(struct req *r)
{
	const struct colconf_token *tok;
	const struct console_file *cf;
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST");
	if (post && !same_origin(r)) {
		log_warn("api: refused %s %s from another origin (cross-site)", r->method, r->path);
		return respond_err(r, 403, "cross-origin request refused");
	}
	/* The console's page and its two files, the only things served
	 * without a token: they hold no data (console.h). */
	if (get && (cf = console_lookup(r->path)))
		return respond(r, 200, console_ctype(cf), NULL, (const char *)cf->data, cf->len);
	if (!strcmp(r->path, "/metrics")) {
		cmetrics_api(API_METRICS);
		char *m = cmetrics_render();
		char *all = silent_agents_metrics(r->a, m);
		return send_stream(r, 200, "text/plain; version=0.0.4", NULL, all, all ? strlen(all) : 0);
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		if (strcmp(r->path, rt->path) || !(rt->post ? post : get))
			continue;
		if (!(tok = authorize(r, rt->role)))
			return;
		if (rt->metric >= 0)
			cmetrics_api((enum api_action)rt->metric);
		if (rt->fn)
			rt->fn(r);
		else
			rt->fn_tok(r, tok);
		return;
	}
	if (!strncmp(r->path, "/api/", 5) || !strcmp(r->path, "/")) {
		respond_err(r, get || post ? 404 : 405, "no such endpoint");
	} else {
		respond_err(r, 404, "no such endpoint");
	}
}

/* A header's value into out (NUL-terminated, cut to len); 0, or -400 when
 * the header is repeated: a second Authorization or Origin is ambiguous
 * (which one would a proxy in front have checked?), so it is refused. */
static int head_value(const struct http_request *hr, const char *name, char *out, size_t len)
{
	const struct http_header *h = http_find_header(hr->headers, hr->nheaders, name);
	if (!h)
		return 0;
	if (http_find_header(h + 1, hr->nheaders - (unsigned)(h - hr->headers) - 1, name))
		return -400;
	size_t n = h->value_len < len - 1 ? h->value_len : len - 1;
	memcpy(out, h->value, n);
	out[n] = 0;
	return 0;
}

/* Fills method, path, query and the four headers the routes look at from a
 * head http_parse_request accepted (which already refused bare LF, obs-fold,
 * controls, conflicting Content-Length and the like). 0 or -status. */
static int req_fill(struct req *r, const struct http_request *hr)
{
	if (hr->method_len >= sizeof(r->method))
		return -501;
	memcpy(r->method, hr->method, hr->method_len);
	r->method[hr->method_len] = 0;
	if (hr->target_len >= sizeof(r->target))
		return -414;
	memcpy(r->target, hr->target, hr->target_len);
	r->target[hr->target_len] = 0;
	char *q = strchr(r->target, '?');
	if (q) {
		*q = 0;
		r->query = q + 1;
	}
	if (strlen(r->target) >= sizeof(r->path))
		return -414;
	snprintf(r->path, sizeof(r->path), "%s", r->target);
	if (hr->body == HTTP_BODY_CHUNKED)
		return -411;            /* parameters travel in the query string */
	int rc = head_value(hr, "Authorization", r->auth, sizeof(r->auth));
	if (!rc)
		rc = head_value(hr, "Origin", r->origin, sizeof(r->origin));
	if (!rc && hr->host) {
		size_t n = hr->host_len < sizeof(r->host) - 1 ? hr->host_len : sizeof(r->host) - 1;
		memcpy(r->host, hr->host, n);
		r->host[n] = 0;
	}
	if (!rc)
		rc = head_value(hr, "Sec-Fetch-Site", r->fetch_site, sizeof(r->fetch_site));
	return rc;
}

static void conf_get(struct req *r)
{
	pthread_mutex_lock(&r->a->state);
	r->ref = r->a->cur;
	r->ref->refs++;
	r->conf = r->ref->c;
	pthread_mutex_unlock(&r->a->state);
}

static void confref_drop(struct confref *ref)
{
	if (ref->owned)
		colconf_free(ref->c);
	free(ref);
}

/* Ends a request: drops its configuration (freeing a replaced one it was
 * the last user of), wipes the token it carried, frees it. */
static void req_free(struct req *r)
{
	if (!r)
		return;
	struct api *a = r->a;
	pthread_mutex_lock(&a->state);
	if (r->ref && --r->ref->refs == 0 && r->ref != a->cur)
		confref_drop(r->ref);
	pthread_mutex_unlock(&a->state);
	OPENSSL_cleanse(r->auth, sizeof(r->auth));
	OPENSSL_cleanse(r->head, r->got);
	jsonw_free(&r->out);
	free(r);
}

/* ---- the connections, on the loop thread ---- */

static void conn_on_event(struct tlsconn *t, enum tlsconn_event ev);
static void answer_error(struct aconn *c, int status);

static void conn_reap(struct loop_timer *tm, uint64_t now)
{
	struct aconn *c = (struct aconn *)((char *)tm - offsetof(struct aconn, reap));
	struct api *a = c->a;
	free(c);
	if (a->stopping && !a->nconns)
		loop_stop(a->loop);
}

/* Closes c; its memory goes from a timer, never inside the dispatch that
 * may still name its watch (loop.h). A request with a worker is not
 * closed here: its done callback does it. */
static void conn_close(struct aconn *c)
{
	struct api *a = c->a;
	if (c->st == A_DEAD)
		return;
	tlsconn_close(&c->t);
	if (c->st == A_BUSY) {
		c->orphan = true;        /* a worker holds c->r: work_done finishes */
		return;
	}
	c->st = A_DEAD;
	loop_timer_cancel(a->loop, &c->deadline);
	req_free(c->r);
	c->r = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	if (loop_timer_set(a->loop, &c->reap, 0))
		log_err("api: out of memory freeing a connection");   /* leaked, not used */
}

static void set_deadline(struct aconn *c, unsigned ms)
{
	loop_timer_set(c->a->loop, &c->deadline, loop_now_ms() + ms);
}

static void on_deadline(struct loop_timer *tm, uint64_t now)
{
	struct aconn *c = (struct aconn *)((char *)tm - offsetof(struct aconn, deadline));
	if (c->st == A_HEAD || c->st == A_BODY) {
		/* slowloris: a request that did not arrive whole in time */
		log_debug("api: request not complete in %d s: 408", API_HEAD_TIMEOUT_S);
		answer_error(c, 408);
		return;
	}
	conn_close(c);
}

/* Sends r's answer; the connection reads again (keep-alive) or closes
 * when it is out (conn_written). */
static void answer_send(struct aconn *c)
{
	struct req *r = c->r;
	c->st = A_WRITE;
	tlsconn_set_reading(&c->t, false);
	set_deadline(c, API_WRITE_TIMEOUT_S * 1000);
	char *buf = r->out.out.data;   /* the answer's bytes, handed to the connection */
	size_t len = r->out.oom ? 0 : r->out.out.len;
	r->out.out = (struct buf){ 0 };
	if (!buf || !len) {
		free(buf);
		conn_close(c);
		return;
	}
	if (tlsconn_write(&c->t, buf, len) < 0)
		conn_close(c);
}

/* A refusal decided on the loop (a bad or oversized request, a timeout):
 * answered at once, then a lingering close. */
static void answer_error(struct aconn *c, int status)
{
	struct req *r = c->r;
	r->close = r->linger = true;
	respond_err(r, status, http_status_text(status));
	answer_send(c);
}

static void work_run(struct work *w)
{
	struct req *r = (struct req *)((char *)w - offsetof(struct req, work));
	route(r);
	if (!r->responded)
		respond_err(r, 500, "no answer");
	ERR_clear_error();
}

static void work_done(struct work *w, bool cancelled)
{
	struct req *r = (struct req *)((char *)w - offsetof(struct req, work));
	struct aconn *c = r->c;
	if (cancelled) {
		r->responded = false;
		jsonw_reset(&r->out);
		r->close = true;
		respond_err(r, 503, "the collector is stopping");
	}
	if (c->orphan) {         /* the client left while the worker ran */
		c->st = A_IDLE;
		conn_close(c);
		return;
	}
	answer_send(c);
}

/* The head and body are in: the request goes to a worker (store queries,
 * verify, exports may take seconds; the loop keeps serving ingest and the
 * other clients meanwhile). Reading pauses until the answer is out. */
static void dispatch(struct aconn *c)
{
	struct req *r = c->r;
	struct api *a = c->a;
	c->st = A_BUSY;
	tlsconn_set_reading(&c->t, false);
	loop_timer_cancel(a->loop, &c->deadline);
	if (!r->hr.keep_alive || a->stopping)
		r->close = true;
	conf_get(r);
	r->work.run = work_run;
	r->work.done = work_done;
	workers_submit(a->workers, &r->work);
}

static const struct http_limits api_limits = {
	.max_head_bytes = API_MAX_HEAD,
	.max_headers = API_MAX_HEADERS,
	.max_body_bytes = API_MAX_BODY,
};

/* The head is complete in r->head[0..head_len): its fields, its body. */
static void head_done(struct aconn *c, int head_len)
{
	struct req *r = c->r;
	int rc = req_fill(r, &r->hr);
	if (rc)
		return answer_error(c, -rc);
	uint64_t body = r->hr.body == HTTP_BODY_LENGTH ? r->hr.content_length : 0;
	uint64_t after = r->got - (size_t)head_len;
	/* Bytes past this request's body are a pipelined next request: it is
	 * not run (the answer says Connection: close), so nothing a client
	 * appends to a body can be read as a request of its own. */
	if (after > body)
		r->close = true;
	c->body_left = body - (after < body ? after : body);
	if (c->body_left) {
		c->st = A_BODY;
		return;
	}
	dispatch(c);
}

/* Reads what the socket has for the state c is in. */
static void conn_readable(struct aconn *c)
{
	struct api *a = c->a;
	for (;;) {
		if (c->st == A_IDLE) {
			if (!(c->r = calloc(1, sizeof(*c->r))))
				return conn_close(c);
			c->r->a = a;
			c->r->c = c;
			jsonw_init(&c->r->out);
			c->st = A_HEAD;
			set_deadline(c, API_HEAD_TIMEOUT_S * 1000);
		}
		struct req *r = c->r;
		char sink[4096];
		ssize_t n;
		if (c->st == A_LINGER) {
			/* after our close_notify and FIN: raw bytes, dropped */
			n = recv(c->t.w.fd, sink, sizeof(sink), 0);
			if (n > 0)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			return conn_close(c);
		}
		if (c->st == A_HEAD)
			n = tlsconn_read(&c->t, r->head + r->got, sizeof(r->head) - r->got);
		else if (c->st == A_BODY)
			n = tlsconn_read(&c->t, sink, sizeof(sink));
		else
			return;
		if (n < 0)
			return conn_close(c);
		if (n == 0) {
			if (c->st == A_HEAD && !r->got) {
				/* nothing arrived yet: back to idle, no buffer held */
				req_free(r);
				c->r = NULL;
				c->st = A_IDLE;
				set_deadline(c, API_IDLE_TIMEOUT_S * 1000);
			}
			return;
		}
		if (c->st == A_BODY) {
			if ((uint64_t)n > c->body_left)
				r->close = true;   /* pipelined: see head_done */
			c->body_left -= (uint64_t)n < c->body_left ? (uint64_t)n : c->body_left;
			if (!c->body_left)
				return dispatch(c);
			continue;
		}
		size_t from = r->got;
		r->got += (size_t)n;
		if (!http_head_may_be_complete(r->head, r->got, from) && r->got < sizeof(r->head))
			continue;
		int rc = http_parse_request(r->head, r->got, &api_limits, &r->hr);
		if (rc < 0)
			return answer_error(c, -rc);
		if (rc > 0)
			return head_done(c, rc);
	}
}

static void conn_written(struct aconn *c)
{
	struct api *a = c->a;
	struct req *r = c->r;
	if (r->linger) {
		/* Refused mid-request: FIN now, swallow what is still in flight
		 * for a moment, so the peer's kernel does not answer it with a
		 * reset that would destroy our answer unread (nginx's
		 * lingering close). */
		req_free(r);
		c->r = NULL;
		SSL_shutdown(c->t.ssl);
		shutdown(c->t.w.fd, SHUT_WR);
		c->st = A_LINGER;
		set_deadline(c, API_LINGER_MS);
		tlsconn_set_reading(&c->t, true);
		return;
	}
	bool close_now = r->close || a->stopping;
	req_free(r);
	c->r = NULL;
	if (close_now)
		return conn_close(c);
	c->st = A_IDLE;
	set_deadline(c, API_IDLE_TIMEOUT_S * 1000);
	tlsconn_set_reading(&c->t, true);
	if (tlsconn_has_buffered(&c->t))
		conn_readable(c);
}

static void conn_on_event(struct tlsconn *t, enum tlsconn_event ev)
{
	struct aconn *c = (struct aconn *)((char *)t - offsetof(struct aconn, t));
	switch (ev) {
	case TLSCONN_READY:
		c->st = A_IDLE;
		set_deadline(c, API_IDLE_TIMEOUT_S * 1000);
		return;
	case TLSCONN_READABLE:
		return conn_readable(c);
	case TLSCONN_WRITTEN:
		return conn_written(c);
	case TLSCONN_CLOSED:
		return conn_close(c);
	}
}

static void on_accept_retry(struct loop_timer *tm, uint64_t now)
{
	struct api *a = (struct api *)((char *)tm - offsetof(struct api, accept_retry));
	if (!a->stopping)
		loop_mod(a->loop, &a->lw, EPOLLIN);
}

static void on_listen(struct loop_watch *w, uint32_t events)
{
	struct api *a = (struct api *)((char *)w - offsetof(struct api, lw));
	for (int i = 0; i < 64 && !a->stopping; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
				/* out of descriptors: level-triggered epoll would spin on
				 * the pending connection, so pause accepting a moment */
				log_warn("api: accept: %s; pausing 100 ms", strerror(errno));
				loop_mod(a->loop, w, 0);
				loop_timer_set(a->loop, &a->accept_retry, loop_now_ms() + 100);
			}
			return;
		}
		struct aconn *c = a->nconns < a->max_conns ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		c->a = a;
		c->deadline.fn = on_deadline;
		c->reap.fn = conn_reap;
		if (tlsconn_accept(&c->t, a->loop, a->ctx, fd, conn_on_event)) {
			free(c);
			continue;
		}
		c->st = A_HANDSHAKE;
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->nconns++;
		set_deadline(c, API_HANDSHAKE_TIMEOUT_S * 1000);
	}
}

/* On the loop thread, from api_stop: no new connections; idle ones close
 * now, the others once their request is answered (bounded by the request
 * and write deadlines), then the loop thread ends. */
static void on_stop(struct loop_watch *w, uint32_t events)
{
	struct api *a = (struct api *)((char *)w - offsetof(struct api, stopw));
	uint64_t v;
	if (read(w->fd, &v, sizeof(v)) < 0)
		return;
	a->stopping = true;
	loop_del(a->loop, &a->lw);
	loop_timer_cancel(a->loop, &a->accept_retry);
	for (struct aconn *c = a->conns, *n; c; c = n) {
		n = c->next;
		if (c->st == A_IDLE || c->st == A_HANDSHAKE)
			conn_close(c);
	}
	if (!a->nconns)
		loop_stop(a->loop);
}

static void *api_thread(void *arg)
{
	struct api *a = arg;
	int rc = loop_run(a->loop);
	if (rc)
		log_err("api: event loop: %s", strerror(-rc));
	return NULL;
}

int api_start(const struct api_opts *o, struct api **out, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int rc;
	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->ctx = o->ctx;
	a->lw.fd = a->stopw.fd = -1;
	/* Clients of the API share the process's descriptors with the agents
	 * and the store: they may hold at most half of them, so a flood of
	 * idle HTTPS connections cannot lock the agents out. */
	struct rlimit nofile;
	a->max_conns = API_MAX_CONNS;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur / 2 < a->max_conns)
		a->max_conns = (unsigned)(nofile.rlim_cur / 2);
	a->lw.fn = on_listen;
	a->stopw.fn = on_stop;
	a->accept_retry.fn = on_accept_retry;
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->state, NULL);
	a->cur = calloc(1, sizeof(*a->cur));
	a->store_url = strdup(o->store_url);
	a->loop = o->loop;
	a->own_loop = !o->loop;
	if (!a->cur || !a->store_url || (a->own_loop && !(a->loop = loop_new()))) {
		rc = -ENOMEM;
		goto err;
	}
	a->cur->c = (struct colconf *)o->conf;
	if ((rc = store_open(o->store_url, &a->store, err, errlen)))
		goto err;
	if ((a->lw.fd = ingest_listen(o->listen, 512, err, errlen)) < 0) {
		rc = a->lw.fd;
		goto err;
	}
	fcntl(a->lw.fd, F_SETFL, fcntl(a->lw.fd, F_GETFL) | O_NONBLOCK);
	if (getsockname(a->lw.fd, (struct sockaddr *)&ss, &sl) == 0)
		a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	if ((a->stopw.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 || (rc = loop_add(a->loop, &a->lw, EPOLLIN)) ||
	    (rc = loop_add(a->loop, &a->stopw, EPOLLIN)) || !(a->workers = workers_new(a->loop, API_WORKERS))) {
		rc = rc ? rc : -ENOMEM;
		snprintf(err, errlen, "api: event loop: %s", strerror(-rc));
		goto err;
	}
	if (a->own_loop && (rc = -pthread_create(&a->thr, NULL, api_thread, a))) {
		snprintf(err, errlen, "api thread: %s", strerror(-rc));
		goto err;
	}
	*out = a;
	return 0;
err:
	workers_free(a->workers);
	if (a->lw.fd >= 0) {
		if (a->loop)
			loop_del(a->loop, &a->lw);
		close(a->lw.fd);
	}
	if (a->stopw.fd >= 0) {
		if (a->loop)
			loop_del(a->loop, &a->stopw);
		close(a->stopw.fd);
	}
	if (a->own_loop)
		loop_free(a->loop);
	store_close(a->store);
	free(a->cur);
	free(a->store_url);
	free(a);
	return rc;
}

void api_reload(struct api *a, struct colconf *c)
{
	struct confref *ref = calloc(1, sizeof(*ref));
	if (!ref) {
		log_err("api: reload: out of memory, the previous configuration stays");
		colconf_free(c);
		return;
	}
	ref->c = c;
	ref->owned = true;
	pthread_mutex_lock(&a->state);
	struct confref *old = a->cur;
	a->cur = ref;
	/* Otherwise the last request using it drops it (req_free). The
	 * start-up one is never owned: main() frees it after api_stop. */
	if (old->refs == 0)
		confref_drop(old);
	pthread_mutex_unlock(&a->state);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	/* The loop thread winds down: requests being read or answered finish
	 * (each bounded by its deadline), their workers' results come back;
	 * only then does it return, and only then does the store close. */
	uint64_t one = 1;
	if (write(a->stopw.fd, &one, sizeof(one)) != sizeof(one))
		log_err("api: stop: %s", strerror(errno));
	if (a->own_loop)
		pthread_join(a->thr, NULL);
	else if (loop_run(a->loop))       /* on_stop comes first, then the last connection stops it */
		log_err("api: stop: event loop failed");
	workers_free(a->workers);          /* nothing queued or running by now */
	close(a->lw.fd);
	loop_del(a->loop, &a->stopw);
	close(a->stopw.fd);
	if (a->own_loop)
		loop_free(a->loop);
	store_close(a->store);
	confref_drop(a->cur);
	free(a->store_url);
	pthread_mutex_destroy(&a->state);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int api_port(const struct api *a) { return a->port; }
