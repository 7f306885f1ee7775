/* verify: `vigil verify`, end-to-end integrity check of the audit trail.
 * The collector walks every agent's chain and batch signatures against its
 * store (collector/chain.c) and names each gap, alteration or missing range;
 * this command prints that report and exits 0 only if the trail is intact
 * (1 if anything is missing or altered, or the check could not run). Must
 * never: exit 0 on a transport or HTTP error. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include "cli.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil verify --server URL --token T [--agent ID] [--cacert FILE] [--insecure]\n"
		   "  Checks every agent's hash chain and batch signatures in the collector's store.\n"
		   "  Exit 0 only if intact; otherwise prints what is missing or altered and exits 1.\n"
		   "  $VIGIL_SERVER, $VIGIL_TOKEN and $VIGIL_CACERT stand in for the options.\n");
}

int cli_verify_main(int argc, char **argv)
{
	static const struct option o[] = {
		{ "server", required_argument, NULL, 'S' }, { "token", required_argument, NULL, 'T' },
		{ "agent", required_argument, NULL, 'G' }, { "cacert", required_argument, NULL, 'C' },
		{ "insecure", no_argument, NULL, 'k' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	struct cli_server sv;
	const char *agent = NULL;
	int opt;
	cli_server_init(&sv);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", o, NULL)) != -1) {
		if (cli_server_opt(&sv, opt, optarg))
			continue;
		switch (opt) {
		case 'G': agent = optarg; break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || !cli_server_ready(&sv)) {
		fprintf(stderr, "vigil verify: --server and --token are required\n");
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	return cli_verify_run(&sv, agent);
}
