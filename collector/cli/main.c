/* vigil: the command-line tool for admins and SOC analysts. This file only
 * dispatches: it owns the subcommand table and the top-level --help, and
 * must never grow subcommand logic (that lives in one file per command,
 * declared in cli.h). */
#include <stdio.h>
#include <string.h>
#include "cli.h"

/* One row per subcommand. query, verify, policy and status are added here
 * by their own files (see cli.h). */
const struct cli_command cli_commands[] = {
	{ "ca", cli_ca_main, "manage the interception CA (init, trust, untrust)" },
	{ "query", cli_query_main, "query the collector's audit events (filters, --top, --json, --csv)" },
	{ "inventory", cli_inventory_main, "who uses which AI service through which program; set review states" },
	{ "alerts", cli_alerts_main, "alerts on unusual behaviour raised by the collector (volume, new use, ...)" },
	{ "verify", cli_verify_main, "verify every agent's audit chain and signatures on the collector" },
	{ "policy", cli_policy_main, "check a policy file, or dry-run a request against it (check, explain)" },
	{ "justify", cli_justify_main, "justify a request a warn rule stopped: a bounded exemption, audited" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: vigil <command> [options]\n"
		   "       vigil <command> --help\n\n"
		   "commands:\n");
	for (const struct cli_command *c = cli_commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	for (const struct cli_command *c = cli_commands; c->name; c++)
		if (strcmp(argv[1], c->name) == 0)
			return c->fn(argc - 1, argv + 1);
	fprintf(stderr, "vigil: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
