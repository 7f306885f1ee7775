/* inventory: `vigil inventory`, the inventory of AI use on the collector:
 * every (user, program, provider, host) seen, pass-through connections
 * included, with first and last seen, events, requests, tokens, findings,
 * blocks and the review state of the (program, provider) pair. An admin
 * token sets that state with --review. A thin client like `vigil query`
 * (same --server/--token/--cacert options, same transport). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil inventory --server URL --token T [--since DURATION] [--user U] [--host H]\n"
		   "                       [--exe PATH] [--provider P] [--json | --csv] [--cacert FILE] [--insecure]\n"
		   "       vigil inventory --server URL --token ADMIN_T --review unreviewed|approved|unapproved\n"
		   "                       --exe PATH --provider P\n"
		   "  Lists every (user, program, provider, host) seen, busiest first; a connection passed\n"
		   "  through undecrypted is listed under its server name. --review records an admin's\n"
		   "  decision on a program's use of a provider (audited as a \"review\" event).\n");
}

int cli_inventory_main(int argc, char **argv)
{
	static const struct option o[] = {
		{ "server", required_argument, NULL, 'S' }, { "token", required_argument, NULL, 'T' },
		{ "cacert", required_argument, NULL, 'C' }, { "insecure", no_argument, NULL, 'k' },
		{ "since", required_argument, NULL, 's' }, { "user", required_argument, NULL, 'U' },
		{ "host", required_argument, NULL, 'H' }, { "exe", required_argument, NULL, 'E' },
		{ "provider", required_argument, NULL, 'P' }, { "json", no_argument, NULL, 'j' },
		{ "csv", no_argument, NULL, 'v' }, { "review", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' }, { 0 },
	};
	static const char *const keys[] = { "since", "user", "host", "exe", "provider" };
	const char *vals[5] = { 0 }, *fmt = "table", *review = NULL;
	struct cli_server sv;
	char q[8192];
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
		case 'E': vals[3] = optarg; break;
		case 'P': vals[4] = optarg; break;
		case 'j': fmt = "json"; break;
		case 'v': fmt = "csv"; break;
		case 'R': review = optarg; break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || !cli_server_ready(&sv) || (review && (!vals[3] || !vals[4]))) {
		fprintf(stderr, "vigil inventory: %s\n",
			optind < argc ? "unexpected argument" : review ? "--review needs --exe and --provider"
								    : "--server and --token are required");
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (review) {
		snprintf(q, sizeof(q), "/api/v1/review");
		cli_query_param(q, sizeof(q), "exe", vals[3]);
		cli_query_param(q, sizeof(q), "provider", vals[4]);
		cli_query_param(q, sizeof(q), "state", review);
		return cli_server_print(&sv, "inventory", q, true);
	}
	snprintf(q, sizeof(q), "/api/v1/inventory");
	for (size_t i = 0; i < 5; i++)
		cli_query_param(q, sizeof(q), keys[i], vals[i]);
	cli_query_param(q, sizeof(q), "format", fmt);
	return cli_server_print(&sv, "inventory", q, false);
}
