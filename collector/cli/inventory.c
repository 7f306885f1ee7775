/* inventory: `vigil inventory`, the inventory of AI use on the collector:
 * every (user, program, provider, host) seen, pass-through connections
 * included, with first and last seen, events, requests, tokens, findings,
 * blocks and the review state of the (program, provider) pair. An admin
 * token sets that state with --review. A thin client like `vigil query`
 * (same --server/--token/--cacert options, same transport). */
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
	static const char *const filters[] = { "since", "user", "host", "exe", "provider", NULL };
	static const struct cli_cmd cmd = { "inventory", usage, filters, "review", true };
	struct cli_args a;
	char q[8192];
	int rc = cli_cmd_parse(&cmd, argc, argv, &a);
	if (rc >= 0)
		return rc;
	if (a.extra) {
		/* --review: an admin's decision on one program's use of one provider */
		if (!a.vals[3] || !a.vals[4]) {
			fprintf(stderr, "vigil inventory: --review needs --exe and --provider\n");
			usage(stderr);
			return CLI_EXIT_USAGE;
		}
		snprintf(q, sizeof(q), "/api/v1/review");
		cli_query_param(q, sizeof(q), "exe", a.vals[3]);
		cli_query_param(q, sizeof(q), "provider", a.vals[4]);
		cli_query_param(q, sizeof(q), "state", a.extra);
		return cli_server_print(&a.sv, "inventory", q, true);
	}
	snprintf(q, sizeof(q), "/api/v1/inventory");
	cli_cmd_query(&cmd, &a, q, sizeof(q));
	return cli_server_print(&a.sv, "inventory", q, false);
}
