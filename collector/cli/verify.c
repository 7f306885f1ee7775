/* verify: `vigil verify`, end-to-end integrity check of the audit trail.
 * The collector walks every agent's chain and batch signatures against its
 * store (collector/chain.c) and names each gap, alteration or missing range;
 * this command prints that report and exits 0 only if the trail is intact
 * (1 if anything is missing or altered, or the check could not run). Must
 * never: exit 0 on a transport or HTTP error. */
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
	static const char *const filters[] = { "agent", NULL };
	static const struct cli_cmd cmd = { "verify", usage, filters, NULL, false };
	struct cli_args a;
	int rc = cli_cmd_parse(&cmd, argc, argv, &a);
	return rc >= 0 ? rc : cli_verify_run(&a.sv, a.vals[0]);
}
