/* query: `vigil query`, the SOC analyst's view of the collector. A thin
 * HTTPS client (libcurl) of the collector's API: the server filters, sorts
 * and renders (aligned table, --json lines with the contract's fields, or
 * --csv), so every client sees the same answer.
 *
 * Also home of the small HTTP helper `vigil verify` shares (cli_api_get).
 * Must never: print the token, disable certificate verification silently
 * (--insecure must be asked for), or put a filter value into the URL without
 * percent-encoding it. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <curl/curl.h>
#include "cli.h"

struct cli_resp {
	char *body;
	size_t len;
	long status;
	char verify_hdr[32];
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct cli_resp *r = arg;
	size_t add = sz * n;
	char *nb = realloc(r->body, r->len + add + 1);
	if (!nb)
		return 0;
	memcpy(nb + r->len, p, add);
	r->body = nb;
	r->len += add;
	nb[r->len] = 0;
	return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct cli_resp *r = arg;
	size_t l = sz * n;
	if (l > 16 && !strncasecmp(p, "X-Vigil-Verify:", 15)) {
		size_t k = 0;
		for (size_t i = 15; i < l && k + 1 < sizeof(r->verify_hdr); i++)
			if (p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
				r->verify_hdr[k++] = p[i];
		r->verify_hdr[k] = 0;
	}
	return l;
}

/* Where the collector's CA comes from: --cacert, $VIGIL_CACERT, then the
 * enrolled location, else the system store. */
static const char *ca_path(const char *opt)
{
	if (opt)
		return opt;
	const char *e = getenv("VIGIL_CACERT");
	if (e && *e)
		return e;
	if (access("/etc/vigil/pki/ca.crt", R_OK) == 0)
		return "/etc/vigil/pki/ca.crt";
	return NULL;
}

/* GET (or POST) server + path_query with the bearer token. 0 when the
 * request completed (any HTTP status), -1 on a transport error (message
 * printed). */
int cli_api_call(const char *cmd, const char *server, const char *token, const char *cacert, bool insecure,
		 const char *path_query, bool post, struct cli_resp *r);

int cli_api_call(const char *cmd, const char *server, const char *token, const char *cacert, bool insecure,
		 const char *path_query, bool post, struct cli_resp *r)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char *url = NULL, *auth = NULL, errbuf[CURL_ERROR_SIZE] = "";
	int rc = -1;
	memset(r, 0, sizeof(*r));
	size_t sl = strlen(server);
	while (sl && server[sl - 1] == '/')
		sl--;
	if (!c || asprintf(&url, "%.*s%s", (int)sl, server, path_query) < 0 ||
	    asprintf(&auth, "Authorization: Bearer %s", token) < 0)
		goto out;
	h = curl_slist_append(h, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (post) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	}
	if (cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
	if (insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		fprintf(stderr, "vigil %s: %s: %s\n", cmd, server, errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	rc = 0;
out:
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_slist_free_all(h);
	free(url);
	if (c)
		curl_easy_cleanup(c);
	return rc;
}

static void add_param(CURL *c, char *q, size_t qlen, const char *key, const char *val)
{
	if (!val)
		return;
	char *esc = curl_easy_escape(c, val, 0);
	size_t l = strlen(q);
	snprintf(q + l, qlen - l, "%s%s=%s", strchr(q, '?') ? "&" : "?", key, esc ? esc : "");
	curl_free(esc);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vigil query --server URL --token T [--since DURATION] [--until DURATION]\n"
		"                   [--user U] [--host H] [--finding TYPE] [--action A] [--exe PATH]\n"
		"                   [--provider P] [--model M] [--kind K] [--agent ID] [--limit N]\n"
		"                   [--mcp-server S] [--mcp-method M] [--tool T] [--mcp-session ID]\n"
		"                   [--json | --csv] [--top users|exes|providers|findings|hosts|models|actions|agents|\n"
		"                                          tools|mcp_servers|mcp_methods|mcp_sessions]\n"
		"                   [--cacert FILE] [--insecure]\n"
		"  Events newest first (default limit 1000) as an aligned table, JSON lines (--json, the\n"
		"  contract's event fields) or CSV. --top shows an aggregate instead (default limit 10).\n"
		"  DURATION: 30s, 15m, 24h, 7d, 2w. $VIGIL_SERVER, $VIGIL_TOKEN and $VIGIL_CACERT stand\n"
		"  in for --server, --token and --cacert.\n");
}

int cli_query_main(int argc, char **argv)
{
	static const char *const filters[] = { "since", "until", "user", "host", "finding", "action", "exe",
					       "provider", "model", "kind", "agent", "limit", "mcp-server",
					       "mcp-method", "tool", "mcp-session", NULL };
	static const struct cli_cmd cmd = { "query", usage, filters, "top", true };
	struct cli_args a;
	char q[4096];
	int rc = cli_cmd_parse(&cmd, argc, argv, &a);
	if (rc >= 0)
		return rc;
	snprintf(q, sizeof(q), "%s", a.extra ? "/api/v1/top" : "/api/v1/events");
	cli_query_param(q, sizeof(q), "by", a.extra);
	cli_cmd_query(&cmd, &a, q, sizeof(q));
	return cli_server_print(&a.sv, "query", q, false);
}

/* getopt's values: the server options' letters, then these */
enum { OPT_JSON = 256, OPT_CSV, OPT_HELP, OPT_EXTRA, OPT_FILTER };

int cli_cmd_parse(const struct cli_cmd *c, int argc, char **argv, struct cli_args *a)
{
	struct option o[4 + 3 + 1 + CLI_MAX_FILTERS + 1] = {
		{ "server", required_argument, NULL, 'S' }, { "token", required_argument, NULL, 'T' },
		{ "cacert", required_argument, NULL, 'C' }, { "insecure", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, OPT_HELP },
	};
	size_t n = 5, nf = 0;
	int opt;

	memset(a, 0, sizeof(*a));
	a->fmt = "table";
	if (c->formats) {
		o[n++] = (struct option){ "json", no_argument, NULL, OPT_JSON };
		o[n++] = (struct option){ "csv", no_argument, NULL, OPT_CSV };
	}
	if (c->extra)
		o[n++] = (struct option){ c->extra, required_argument, NULL, OPT_EXTRA };
	for (; c->filters && c->filters[nf] && nf < CLI_MAX_FILTERS; nf++)
		o[n++] = (struct option){ c->filters[nf], required_argument, NULL, OPT_FILTER + (int)nf };
	cli_server_init(&a->sv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		if (cli_server_opt(&a->sv, opt, optarg))
			continue;
		if (opt >= OPT_FILTER && opt < OPT_FILTER + (int)nf)
			a->vals[opt - OPT_FILTER] = optarg;
		else if (opt == OPT_JSON || opt == OPT_CSV)
			a->fmt = opt == OPT_JSON ? "json" : "csv";
		else if (opt == OPT_EXTRA)
			a->extra = optarg;
		else if (opt == 'h' || opt == OPT_HELP) {
			c->usage(stdout);
			return CLI_EXIT_OK;
		} else {
			c->usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || !cli_server_ready(&a->sv)) {
		fprintf(stderr, "vigil %s: %s\n", c->name,
			optind < argc ? "unexpected argument" : "--server and --token are required");
		c->usage(stderr);
		return CLI_EXIT_USAGE;
	}
	return -1;
}

void cli_cmd_query(const struct cli_cmd *c, const struct cli_args *a, char *q, size_t qlen)
{
	for (size_t i = 0; c->filters && c->filters[i] && i < CLI_MAX_FILTERS; i++) {
		char key[64];
		size_t k = 0;
		for (; c->filters[i][k] && k + 1 < sizeof(key); k++)
			key[k] = c->filters[i][k] == '-' ? '_' : c->filters[i][k];
		key[k] = 0;
		cli_query_param(q, qlen, key, a->vals[i]);
	}
	if (c->formats)
		cli_query_param(q, qlen, "format", a->fmt);
}

void cli_server_init(struct cli_server *s)
{
	s->server = getenv("VIGIL_SERVER");
	s->token = getenv("VIGIL_TOKEN");
	s->cacert = NULL;
	s->insecure = false;
}

bool cli_server_opt(struct cli_server *s, int opt, const char *arg)
{
	switch (opt) {
	case 'S': s->server = arg; return true;
	case 'T': s->token = arg; return true;
	case 'C': s->cacert = arg; return true;
	case 'k': s->insecure = true; return true;
	default: return false;
	}
}

bool cli_server_ready(const struct cli_server *s)
{
	return s->server && s->token && *s->server && *s->token;
}

void cli_query_param(char *q, size_t qlen, const char *key, const char *val)
{
	CURL *c = curl_easy_init();
	if (c)
		add_param(c, q, qlen, key, val);
	curl_easy_cleanup(c);
}

int cli_server_print(const struct cli_server *s, const char *cmd, const char *path_query, bool post)
{
	struct cli_resp r;
	if (cli_api_call(cmd, s->server, s->token, ca_path(s->cacert), s->insecure, path_query, post, &r))
		return CLI_EXIT_FAIL;
	int ret = CLI_EXIT_OK;
	if (r.status != 200) {
		fprintf(stderr, "vigil %s: HTTP %ld: %s", cmd, r.status, r.body ? r.body : "\n");
		ret = r.status == 400 ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	} else if (r.body) {
		fwrite(r.body, 1, r.len, stdout);
	}
	free(r.body);
	return ret;
}

/* verify shares the transport; it lives here to keep one copy of it. */
int cli_verify_run(const struct cli_server *s, const char *agent)
{
	char q[512] = "/api/v1/verify";
	struct cli_resp r;
	if (agent) {
		CURL *c = curl_easy_init();
		if (!c)
			return CLI_EXIT_FAIL;
		add_param(c, q, sizeof(q), "agent", agent);
		curl_easy_cleanup(c);
	}
	if (cli_api_call("verify", s->server, s->token, ca_path(s->cacert), s->insecure, q, false, &r))
		return CLI_EXIT_FAIL;
	int ret;
	if (r.status != 200) {
		fprintf(stderr, "vigil verify: HTTP %ld: %s", r.status, r.body ? r.body : "\n");
		ret = CLI_EXIT_FAIL;
	} else {
		if (r.body)
			fwrite(r.body, 1, r.len, stdout);
		ret = strcmp(r.verify_hdr, "intact") == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
	}
	free(r.body);
	return ret;
}
