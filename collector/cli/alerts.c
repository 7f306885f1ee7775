/* alerts: `vigil alerts`, the collector's alerts on unusual behaviour
 * (collector/alerts.h): the events of kind "alert", newest first, with the
 * detector in RULE and the evidence in the reason (--json shows every
 * field). A thin client over the events API, same options as `vigil
 * query`. */
#include <getopt.h>
#include <stdio.h>
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil alerts --server URL --token T [--since DURATION] [--user U] [--host H]\n"
		   "                    [--rule volume|new_use|burst|injection|tamper|silent] [--limit N]\n"
		   "                    [--json | --csv] [--cacert FILE] [--insecure]\n"
		   "  Alerts raised by the collector's detectors (thresholds: alerts: in collector.yaml).\n");
}

int cli_alerts_main(int argc, char **argv)
{
	static const struct option o[] = {
		{ "server", required_argument, NULL, 'S' }, { "token", required_argument, NULL, 'T' },
		{ "cacert", required_argument, NULL, 'C' }, { "insecure", no_argument, NULL, 'k' },
		{ "since", required_argument, NULL, 's' }, { "user", required_argument, NULL, 'U' },
		{ "host", required_argument, NULL, 'H' }, { "rule", required_argument, NULL, 'R' },
		{ "limit", required_argument, NULL, 'l' }, { "json", no_argument, NULL, 'j' },
		{ "csv", no_argument, NULL, 'v' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	static const char *const keys[] = { "since", "user", "host", "rule", "limit" };
	const char *vals[5] = { 0 }, *fmt = "table";
	struct cli_server sv;
	char q[4096];
	int opt;
	cli_server_init(&sv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		if (cli_server_opt(&sv, opt, optarg))
			continue;
		switch (opt) {
		case 's': vals[0] = optarg; break;
		case 'U': vals[1] = optarg; break;
		case 'H': vals[2] = optarg; break;
		case 'R': vals[3] = optarg; break;
		case 'l': vals[4] = optarg; break;
		case 'j': fmt = "json"; break;
		case 'v': fmt = "csv"; break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || !cli_server_ready(&sv)) {
		fprintf(stderr, "vigil alerts: --server and --token are required\n");
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	snprintf(q, sizeof(q), "/api/v1/events?kind=alert");
	for (size_t i = 0; i < 5; i++)
		cli_query_param(q, sizeof(q), keys[i], vals[i]);
	cli_query_param(q, sizeof(q), "format", fmt);
	return cli_server_print(&sv, "alerts", q, false);
}
