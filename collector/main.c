/* vigil-collector: receives agents' audit batches and answers SOC queries.
 * This file only parses the command line and wires the pieces together:
 * ingest (ingest.c) and the HTTPS API (api.c) on one event loop (loop.c)
 * run by the main thread, the API's requests on its worker pool, each with
 * its own store handle; plus the one-shot
 * subcommands (pki init, enroll, revoke, export, verify). Must never hold
 * protocol or storage logic of its own. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "api.h"
#include "chain.h"
#include "colconf.h"
#include "enroll.h"
#include "export.h"
#include "forwarder.h"
#include "alerts.h"
#include "ingest.h"
#include "loop.h"
#include "log.h"
#include "store.h"

#define DEFAULT_CONFIG "/etc/vigil/collector.yaml"

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vigil-collector [--config FILE] [--check]\n"
		"       vigil-collector pki init --dir DIR [--name HOST_OR_IP]...\n"
		"       vigil-collector enroll --agent-id ID --out DIR [--config FILE] [--days N]\n"
		"       vigil-collector revoke --agent-id ID [--undo] [--config FILE]\n"
		"       vigil-collector export --format jsonl|cef|syslog|otlp|ocsf|hec [--since 24h] [--until D] [--user U]\n"
		"                              [--host H] [--finding T] [--action A] [--kind K] [--limit N] [--config FILE]\n"
		"       vigil-collector verify [--agent ID] [--config FILE]\n"
		"\n"
		"  -c, --config FILE  collector configuration (default " DEFAULT_CONFIG ")\n"
		"      --check        validate the configuration and exit (2 with FILE:LINE: reason)\n"
		"  -h, --help         this help\n"
		"\n"
		"Config keys: listen (agent ingest, mTLS), api (HTTPS query API), store (sqlite:PATH |\n"
		"clickhouse://HOST:PORT/DB), tls_cert, tls_key, client_ca, client_ca_key, tokens (list of\n"
		"{token, role: analyst|admin|metrics, name}), retain_days, cert_days, max_agents,\n"
		"syslog_forward (HOST:PORT, UDP RFC 5424), forward (SIEM targets), forward_state, pricing,\n"
		"log_level. SIGHUP reloads the tokens and the pricing (a\n"
		"configuration with a mistake is refused with FILE:LINE and the running one stays).\n");
}

/* SIGHUP: re-read the configuration. A dedicated thread waits for the
 * signal (blocked everywhere else) so that the reload runs outside a signal
 * handler and outside the ingest loop. A configuration with a mistake is
 * refused whole with its file:line reason and the running one stays. */
struct reloader {
	const char *path;
	const struct colconf *boot;   /* what listen/api/store started with */
	struct api *api;
	pthread_t thr;
};

static bool str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static void reload_once(struct reloader *rl)
{
	struct colconf *c;
	char err[512];
	if (colconf_load(rl->path, &c, err, sizeof(err))) {
		log_err("reload refused, the running configuration stays: %s", err);
		return;
	}
	if (str_differs(c->listen, rl->boot->listen) || str_differs(c->api, rl->boot->api) ||
	    str_differs(c->store, rl->boot->store) || str_differs(c->tls_cert, rl->boot->tls_cert) ||
	    str_differs(c->tls_key, rl->boot->tls_key) || str_differs(c->syslog_forward, rl->boot->syslog_forward))
		log_warn("reload: listen, api, store, TLS and forwarding changes need a restart");
	log_set_level((enum log_level)c->log_level);
	if (c->n_forwards != rl->boot->n_forwards)
		log_warn("reload: forward targets change on restart only");
	log_info("reloaded %s: %zu token(s), %zu price(s)", rl->path, c->n_tokens, c->n_prices);
	api_reload(rl->api, c);
}

static void *reload_loop(void *arg)
{
	struct reloader *rl = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	struct timespec tick = { .tv_sec = 1 };
	while (!stop_flag)
		if (sigtimedwait(&set, NULL, &tick) == SIGHUP)
			reload_once(rl);
	return NULL;
}

static int load_conf(const char *path, struct colconf **c)
{
	char err[512];
	if (colconf_load(path, c, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_set_level((enum log_level)(*c)->log_level);
	return 0;
}

static int cmd_pki(int argc, char **argv)
{
	static const struct option o[] = { { "dir", required_argument, NULL, 'd' },
					   { "name", required_argument, NULL, 'n' },
					   { "help", no_argument, NULL, 'h' },
					   { 0 } };
	const char *dir = NULL, *names[32];
	size_t nn = 0;
	char err[512];
	int opt;
	if (argc < 2 || strcmp(argv[1], "init")) {
		fprintf(stderr, "usage: vigil-collector pki init --dir DIR [--name HOST_OR_IP]...\n");
		return 2;
	}
	optind = 2;
	while ((opt = getopt_long(argc, argv, "d:n:h", o, NULL)) != -1) {
		if (opt == 'd')
			dir = optarg;
		else if (opt == 'n' && nn < 32)
			names[nn++] = optarg;
		else if (opt == 'h') {
			printf("usage: vigil-collector pki init --dir DIR [--name HOST_OR_IP]...\n"
			       "Creates DIR/ca.crt+ca.key (the enrollment CA: client_ca, client_ca_key) and\n"
			       "DIR/server.crt+server.key (tls_cert, tls_key; SANs localhost, 127.0.0.1, ::1,\n"
			       "the hostname and every --name).\n");
			return 0;
		} else
			return 2;
	}
	if (!dir) {
		fprintf(stderr, "vigil-collector pki init: --dir is required\n");
		return 2;
	}
	if (enroll_pki_init(dir, names, nn, err, sizeof(err))) {
		fprintf(stderr, "vigil-collector pki init: %s\n", err);
		return 1;
	}
	printf("created %s/ca.crt, %s/ca.key, %s/server.crt, %s/server.key\n", dir, dir, dir, dir);
	return 0;
}

static int cmd_enroll(int argc, char **argv, bool revoke)
{
	static const struct option o[] = { { "agent-id", required_argument, NULL, 'a' },
					   { "out", required_argument, NULL, 'o' },
					   { "config", required_argument, NULL, 'c' },
					   { "days", required_argument, NULL, 'd' },
					   { "undo", no_argument, NULL, 'u' },
					   { "help", no_argument, NULL, 'h' },
					   { 0 } };
	const char *id = NULL, *out = NULL, *cfg = DEFAULT_CONFIG;
	int days = 0, opt, rc;
	bool undo = false;
	char err[512];
	struct colconf *c = NULL;
	struct store *s = NULL;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "a:o:c:d:uh", o, NULL)) != -1) {
		switch (opt) {
		case 'a': id = optarg; break;
		case 'o': out = optarg; break;
		case 'c': cfg = optarg; break;
		case 'd': days = atoi(optarg); break;
		case 'u': undo = true; break;
		case 'h':
			usage(stdout);
			return 0;
		default: return 2;
		}
	}
	if (!id || (!revoke && !out)) {
		fprintf(stderr, "vigil-collector %s: --agent-id%s required\n", argv[0], revoke ? " is" : " and --out are");
		return 2;
	}
	if (!enroll_agent_id_ok(id)) {
		fprintf(stderr, "vigil-collector %s: '%s' is not a valid agent id ([A-Za-z0-9._-], 1 to 64)\n", argv[0], id);
		return 2;
	}
	if ((rc = load_conf(cfg, &c)))
		return rc;
	if (store_open(c->store, &s, err, sizeof(err))) {
		fprintf(stderr, "vigil-collector %s: %s\n", argv[0], err);
		colconf_free(c);
		return 1;
	}
	if (revoke) {
		rc = store_agent_set_revoked(s, id, !undo);
		if (rc)
			fprintf(stderr, "vigil-collector revoke: %s\n", store_errmsg(s));
		else
			printf("agent %s %s\n", id, undo ? "may enroll and send again" : "revoked");
		store_close(s);
		colconf_free(c);
		return rc ? 1 : 0;
	}
	char *key = NULL, *cert = NULL;
	rc = enroll_issue(c->client_ca, c->client_ca_key, s, id, days ? days : (int)c->cert_days, &key, &cert, err,
			  sizeof(err));
	if (!rc)
		rc = enroll_write(out, c->client_ca, key, cert, err, sizeof(err));
	if (rc)
		fprintf(stderr, "vigil-collector enroll: %s\n", err);
	else
		printf("enrolled %s: %s/agent.key, %s/agent.crt, %s/ca.crt (valid %d days)\n", id, out, out, out,
		       days ? days : (int)c->cert_days);
	if (key)
		OPENSSL_cleanse(key, strlen(key));
	free(key);
	free(cert);
	store_close(s);
	colconf_free(c);
	return rc == -EPERM ? 3 : rc ? 1 : 0;
}

static int cmd_export(int argc, char **argv)
{
	static const struct option o[] = {
		{ "format", required_argument, NULL, 'f' }, { "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' }, { "user", required_argument, NULL, 'U' },
		{ "host", required_argument, NULL, 'H' }, { "finding", required_argument, NULL, 'F' },
		{ "action", required_argument, NULL, 'A' }, { "kind", required_argument, NULL, 'K' },
		{ "limit", required_argument, NULL, 'l' }, { "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	const char *cfg = DEFAULT_CONFIG, *fmt_s = "jsonl";
	struct store_filter f = { .limit = STORE_MAX_LIMIT };
	enum export_format fmt;
	int64_t d;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "f:s:u:c:h", o, NULL)) != -1) {
		switch (opt) {
		case 'f': fmt_s = optarg; break;
		case 's':
		case 'u':
			if (api_parse_duration(optarg, &d)) {
				fprintf(stderr, "vigil-collector export: '%s' is not a duration (24h, 7d)\n", optarg);
				return 2;
			}
			*(opt == 's' ? &f.since_us : &f.until_us) = (int64_t)time(NULL) * 1000000 - d;
			break;
		case 'U': f.user = optarg; break;
		case 'H': f.host = optarg; break;
		case 'F': f.finding = optarg; break;
		case 'A': f.action = optarg; break;
		case 'K': f.kind = optarg; break;
		case 'l': f.limit = (size_t)strtoull(optarg, NULL, 10); break;
		case 'c': cfg = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default: return 2;
		}
	}
	if (export_format_parse(fmt_s, &fmt)) {
		fprintf(stderr, "vigil-collector export: --format must be jsonl, cef, syslog, otlp, ocsf or hec\n");
		return 2;
	}
	struct colconf *c;
	struct store *s;
	struct store_rows rows;
	char err[512], host[256] = "-";
	if ((rc = load_conf(cfg, &c)))
		return rc;
	if (store_open(c->store, &s, err, sizeof(err))) {
		fprintf(stderr, "vigil-collector export: %s\n", err);
		colconf_free(c);
		return 1;
	}
	gethostname(host, sizeof(host));
	rc = store_query(s, &f, &rows);
	if (rc) {
		fprintf(stderr, "vigil-collector export: %s\n", store_errmsg(s));
	} else {
		/* Oldest first: a SIEM ingests in time order. */
		for (size_t i = rows.n; i-- > 0;)
			export_line(fmt, &rows.ev[i], host, stdout);
		store_rows_free(&rows);
	}
	store_close(s);
	colconf_free(c);
	return rc ? 1 : 0;
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option o[] = { { "agent", required_argument, NULL, 'a' },
					   { "config", required_argument, NULL, 'c' },
					   { "help", no_argument, NULL, 'h' },
					   { 0 } };
	const char *cfg = DEFAULT_CONFIG, *agent = NULL;
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "a:c:h", o, NULL)) != -1) {
		if (opt == 'a')
			agent = optarg;
		else if (opt == 'c')
			cfg = optarg;
		else if (opt == 'h') {
			usage(stdout);
			return 0;
		} else
			return 2;
	}
	struct colconf *c;
	struct store *s;
	struct chain_report r;
	char err[512];
	if ((rc = load_conf(cfg, &c)))
		return rc;
	if (store_open(c->store, &s, err, sizeof(err))) {
		fprintf(stderr, "vigil-collector verify: %s\n", err);
		colconf_free(c);
		return 1;
	}
	rc = chain_verify(s, agent, &r);
	if (rc) {
		fprintf(stderr, "vigil-collector verify: %s\n", store_errmsg(s));
	} else {
		for (size_t i = 0; i < r.nlines; i++)
			printf("%s\n", r.lines[i]);
		printf("%s: %zu problem(s); %zu agents, %zu events, %zu batches checked\n", r.problems ? "BROKEN" : "INTACT",
		       r.problems, r.agents, r.events, r.batches);
	}
	int ret = rc ? 2 : r.problems ? 1 : 0;
	chain_report_free(&r);
	store_close(s);
	colconf_free(c);
	return ret;
}

static int run(const char *cfg, bool check)
{
	struct colconf *c = NULL;
	struct store *s = NULL;
	struct ingest *g = NULL;
	struct api *a = NULL;
	struct forward *fwd = NULL;
	struct forwarder *fwr = NULL;
	struct alerts_thread *alt = NULL;
	struct loop *loop = NULL;
	SSL_CTX *ictx = NULL, *actx = NULL;
	struct reloader rl;
	bool rl_started = false;
	char err[512], host[256] = "collector";
	int rc;
	if ((rc = load_conf(cfg, &c)))
		return rc;
	/* --check also loads the TLS material, so a wrong path is caught
	 * before a restart. */
	if (!(ictx = ingest_server_ctx(c->tls_cert, c->tls_key, c->client_ca, true, err, sizeof(err))) ||
	    !(actx = ingest_server_ctx(c->tls_cert, c->tls_key, NULL, false, err, sizeof(err)))) {
		fprintf(stderr, "%s:1: %s\n", cfg, err);
		rc = 2;
		goto out;
	}
	if (check) {
		printf("%s: OK\n", cfg);
		rc = 0;
		goto out;
	}
	gethostname(host, sizeof(host));
	/* Blocked before any thread starts, so only the reloader takes it. */
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	if (store_open(c->store, &s, err, sizeof(err))) {
		log_err("%s", err);
		rc = 1;
		goto out;
	}
	if (c->syslog_forward && forward_new(c->syslog_forward, &fwd, err, sizeof(err))) {
		log_err("syslog_forward: %s", err);
		rc = 1;
		goto out;
	}
	/* One event loop for ingest and the API, on this thread. */
	if (!(loop = loop_new())) {
		log_err("event loop: %s", strerror(errno));
		rc = 1;
		goto out;
	}
	struct ingest_opts io = { .loop = loop, .listen = c->listen, .ctx = ictx, .store = s, .store_url = c->store, .max_conns = c->max_agents,
				  .retain_days = c->retain_days, .fwd = fwd, .host = host };
	if (ingest_new(&io, &g, err, sizeof(err))) {
		log_err("listen: %s", err);
		rc = 1;
		goto out;
	}
	struct api_opts ao = { .loop = loop, .listen = c->api, .ctx = actx, .store_url = c->store, .conf = c };
	if (api_start(&ao, &a, err, sizeof(err))) {
		log_err("api: %s", err);
		rc = 1;
		goto out;
	}
	if (forwarder_start(c, &fwr, err, sizeof(err)) || alerts_start(c, &alt, err, sizeof(err))) {
		log_err("%s", err);
		rc = 1;
		goto out;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	rl = (struct reloader){ .path = cfg, .boot = c, .api = a };
	if (pthread_create(&rl.thr, NULL, reload_loop, &rl) == 0)
		rl_started = true;
	else
		log_warn("no reload thread: SIGHUP is ignored");
	log_info("listening for agents on %s (port %d), API on %s (port %d), store %s", c->listen, ingest_port(g), c->api,
		 api_port(a), store_kind(s));
	fprintf(stderr, "vigil-collector ready\n");
	rc = ingest_run(g, &stop_flag) ? 1 : 0;
	log_info("stopping");
out:
	stop_flag = 1;
	if (rl_started)
		pthread_join(rl.thr, NULL);
	alerts_stop(alt);
	forwarder_stop(fwr);
	ingest_free(g);     /* agents first: the API's wind-down runs the loop again */
	api_stop(a);
	loop_free(loop);
	forward_free(fwd);
	store_close(s);
	SSL_CTX_free(ictx);
	SSL_CTX_free(actx);
	colconf_free(c);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cfg = DEFAULT_CONFIG;
	bool check = false;
	int opt;
	log_set_prog("vigil-collector");
	if (argc > 1 && argv[1][0] != '-') {
		if (!strcmp(argv[1], "pki"))
			return cmd_pki(argc - 1, argv + 1);
		if (!strcmp(argv[1], "enroll"))
			return cmd_enroll(argc - 1, argv + 1, false);
		if (!strcmp(argv[1], "revoke"))
			return cmd_enroll(argc - 1, argv + 1, true);
		if (!strcmp(argv[1], "export"))
			return cmd_export(argc - 1, argv + 1);
		if (!strcmp(argv[1], "verify"))
			return cmd_verify(argc - 1, argv + 1);
		fprintf(stderr, "vigil-collector: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			return 0;
		}
		if (opt == 'c')
			cfg = optarg;
		else if (opt == 'k')
			check = true;
		else {
			usage(stderr);
			return 2;
		}
	}
	return run(cfg, check);
}
